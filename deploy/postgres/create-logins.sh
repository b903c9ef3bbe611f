#!/bin/sh
# Creates the worker's least-privilege login, a member of the NOLOGIN role certrecon_app
# that `certrecon migrate` creates and grants exactly its rights. Run after migrate, as the
# schema owner; safe to run again (it then only sets the password from the secret).
# Passwords come from the secret files and never appear in a command line or environment.
set -eu
SECRETS_DIR="${SECRETS_DIR:-/run/secrets}"
export SECRETS_DIR
owner_secret="$SECRETS_DIR/postgres_owner_password"
umask 077
PGPASSFILE="$(mktemp)"
export PGPASSFILE
trap 'rm -f "$PGPASSFILE"' EXIT
# .pgpass escapes ':' and '\' in its fields.
printf '*:*:*:%s:%s\n' "${PGUSER}" "$(sed 's/[\\:]/\\&/g' "$owner_secret")" > "$PGPASSFILE"
psql --no-psqlrc --quiet --file="$(dirname "$0")/create-logins.sql"
