-- The worker's login. Its rights come only from membership in certrecon_app (created by
-- `certrecon migrate`); this fails loudly if that role does not exist yet.
\set ON_ERROR_STOP on
\set worker_password `cat "$SECRETS_DIR/certrecon_worker_password"`
SELECT 'CREATE ROLE certrecon_worker LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'certrecon_worker') \gexec
ALTER ROLE certrecon_worker WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'worker_password';
GRANT certrecon_app TO certrecon_worker;
