-- The ledger: every fact is a row inserted once, never updated or deleted; what changes
-- ("returned", "closed", the current roster row, the current deadline) is derived from later
-- rows. Existing rows are kept: mutable columns become rows of their own, then go.
--
-- Ledger tables (insert-only, refused UPDATE/DELETE/TRUNCATE, hash-chained):
--   certification, decision, result, review_item, staff_decision, deadline_revision,
--   outbox, outbox_ack, outbox_failure, sla_alert, roster_version, calendar_override_event,
--   calendar_publication_event
-- The chain itself (insert-only, refused UPDATE/DELETE/TRUNCATE): ledger_entry, ledger_link.
-- Operational tables, updatable and outside the ledger: consumer_offset, monitor_run,
-- relay_cursor, pending_certification (a projection the database maintains from the ledger),
-- schema_migration.

------------------------------------------------------------------------------------------
-- Published messages and their acknowledgements
------------------------------------------------------------------------------------------

-- A broker acknowledgement is a fact of its own.
CREATE TABLE outbox_ack (
    message_id text PRIMARY KEY REFERENCES outbox (message_id),
    acked_at   timestamptz NOT NULL
);
INSERT INTO outbox_ack (message_id, acked_at)
SELECT message_id, sent_at FROM outbox WHERE sent_at IS NOT NULL;

DROP INDEX outbox_unsent;
ALTER TABLE outbox DROP COLUMN sent_at;
-- The transaction that wrote a row: the relay reads past its cursor only below the oldest
-- transaction still running, so a row whose transaction commits late is never skipped.
ALTER TABLE outbox ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX outbox_position ON outbox (xid, id);
ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check
    CHECK (kind IN ('result', 'dead_letter', 'sla_alert', 'audit_checkpoint'));

-- Where the relay is: every outbox row at or before (last_xid, last_id) was published. One
-- relay holds this row's lock at a time, so replicas never publish concurrently.
CREATE TABLE relay_cursor (
    name       text PRIMARY KEY,
    last_xid   xid8 NOT NULL,
    last_id    bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO relay_cursor (name, last_xid, last_id) VALUES ('outbox', '0', 0);

-- Results keep their published bytes in the outbox only (older rows keep their copy).
ALTER TABLE result ALTER COLUMN payload DROP NOT NULL;

------------------------------------------------------------------------------------------
-- Certifications: returns and deadlines derived from later rows
------------------------------------------------------------------------------------------

-- A recomputed deadline (the holiday schedule arrived): the latest revision wins.
CREATE TABLE deadline_revision (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    certification_id text NOT NULL REFERENCES certification,
    due_date         date NOT NULL,
    deadline         timestamptz NOT NULL,
    provisional      boolean NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deadline_revision_latest ON deadline_revision (certification_id, id DESC);

-- Certifications with no result yet (waiting for staff): maintained by the database (at
-- commit, from the certifications a transaction stored without a result; a staff result
-- ends it; a deadline revision moves it), so no role writes it. Certifications with a
-- result not yet acknowledged are found from the relay's backlog instead (see the
-- open_certification view), so the rules' answers add nothing here.
CREATE TABLE pending_certification (
    certification_id text PRIMARY KEY REFERENCES certification,
    channel          text NOT NULL,
    local_date       date NOT NULL,
    due_date         date NOT NULL,
    deadline         timestamptz NOT NULL,
    provisional      boolean NOT NULL
);
CREATE INDEX pending_certification_due ON pending_certification (due_date)
    INCLUDE (deadline, channel, local_date);
CREATE INDEX pending_certification_deadline ON pending_certification (deadline);
CREATE INDEX pending_certification_provisional ON pending_certification (due_date)
    WHERE provisional;

-- Review items and staff decisions as separate facts.
CREATE TABLE review_item (
    certification_id text PRIMARY KEY REFERENCES certification,
    reason           text NOT NULL,
    queued_at        timestamptz NOT NULL
);
INSERT INTO review_item (certification_id, reason, queued_at)
SELECT certification_id, reason, queued_at FROM review_queue;

-- Every staff decision, with the declared staff id and the authenticated database login.
CREATE TABLE staff_decision (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    certification_id text NOT NULL REFERENCES certification,
    result_id        text REFERENCES result (result_id),
    outcome          text NOT NULL,
    decided_by       text NOT NULL CHECK (decided_by ~ '^staff:.+'),
    login            text DEFAULT session_user,
    note             text,
    decided_at       timestamptz NOT NULL
);
CREATE INDEX staff_decision_certification ON staff_decision (certification_id, id);
-- Decisions taken before the ledger: the login was not recorded then.
INSERT INTO staff_decision (certification_id, result_id, outcome, decided_by, login, note,
                            decided_at)
SELECT q.certification_id,
       (SELECT r.result_id FROM result r
        WHERE r.certification_id = q.certification_id AND r.decided_by = q.decided_by
        ORDER BY r.revision DESC LIMIT 1),
       q.outcome, q.decided_by, NULL, q.note, q.closed_at
FROM review_queue q WHERE q.outcome IS NOT NULL;

-- Open certifications without any result (review items not decided yet) seed the projection.
INSERT INTO pending_certification
SELECT c.certification_id, c.channel, c.local_date, c.due_date, c.deadline, c.provisional
FROM certification c
WHERE c.returned_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM result r WHERE r.certification_id = c.certification_id);

DROP TABLE review_queue;
DROP INDEX certification_open_deadline;
DROP INDEX certification_open_due;
DROP INDEX certification_open_provisional;
-- The first acknowledged result says when a certification was returned (outbox_ack above).
ALTER TABLE certification DROP COLUMN returned_at, DROP COLUMN on_time;

-- The deadline in force: the latest revision, else the one computed on receipt.
CREATE VIEW certification_deadline AS
SELECT c.certification_id,
       COALESCE(d.due_date, c.due_date) AS due_date,
       COALESCE(d.deadline, c.deadline) AS deadline,
       COALESCE(d.provisional, c.provisional) AS provisional
FROM certification c
LEFT JOIN LATERAL (
    SELECT due_date, deadline, provisional FROM deadline_revision r
    WHERE r.certification_id = c.certification_id ORDER BY r.id DESC LIMIT 1
) d ON true;

-- When each certification was returned: the first acknowledgement of any of its results.
CREATE VIEW certification_return AS
SELECT r.certification_id, min(a.acked_at) AS returned_at
FROM result r JOIN outbox_ack a ON a.message_id = r.result_id
GROUP BY r.certification_id;

-- Outbox rows the broker has not acknowledged yet. Rows before the relay cursor were all
-- published, so only the backlog is read: planned with the cursor's actual position (a
-- range of the (xid, id) index), and estimated small for the joins around it.
CREATE FUNCTION outbox_backlog_rows() RETURNS SETOF outbox
LANGUAGE plpgsql STABLE ROWS 100 SET search_path FROM CURRENT AS $$
DECLARE
    at_xid xid8;
    at_id bigint;
BEGIN
    SELECT last_xid, last_id INTO at_xid, at_id FROM relay_cursor WHERE name = 'outbox';
    RETURN QUERY EXECUTE
        'SELECT o.* FROM outbox o WHERE (o.xid, o.id) > ($1, $2)'
        ' AND NOT EXISTS (SELECT 1 FROM outbox_ack a WHERE a.message_id = o.message_id)'
        ' AND NOT EXISTS (SELECT 1 FROM outbox_failure f WHERE f.message_id = o.message_id)'
        USING at_xid, at_id;
END $$;

CREATE VIEW outbox_backlog AS SELECT * FROM outbox_backlog_rows();

-- Open certifications (no result acknowledged): those waiting for a result, those whose
-- first result waits in the relay's backlog, and those whose first result the broker
-- refused for good (a person must look; the deadline still runs).
CREATE VIEW open_certification AS
SELECT p.certification_id, p.channel, p.local_date, p.due_date, p.deadline, p.provisional
FROM pending_certification p
UNION ALL
SELECT c.certification_id, c.channel, c.local_date, d.due_date, d.deadline, d.provisional
FROM (SELECT message_id, kind FROM outbox_backlog_rows()
      UNION ALL
      SELECT f.message_id, 'result' FROM outbox_failure f
      WHERE NOT EXISTS (SELECT 1 FROM outbox_ack a WHERE a.message_id = f.message_id)) o
JOIN result r ON r.result_id = o.message_id AND r.revision = 1
JOIN certification c ON c.certification_id = r.certification_id
JOIN certification_deadline d ON d.certification_id = r.certification_id
WHERE o.kind = 'result';

-- The decision names the roster version it used.
ALTER TABLE decision ADD COLUMN roster_version bigint;

------------------------------------------------------------------------------------------
-- Roster versions
------------------------------------------------------------------------------------------

CREATE TABLE roster_version (
    version          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id_number        text NOT NULL,
    name             text NOT NULL,
    benefit_type     text NOT NULL,
    status           text NOT NULL CHECK (status IN ('active', 'suspended', 'terminated')),
    first_paid_on    date,
    deceased_on      date,
    imprisoned_from  date,
    imprisoned_until date,
    insured_region   text CHECK (insured_region ~ '^[0-9]{6}$'),
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX roster_version_person ON roster_version (id_number, version DESC);
INSERT INTO roster_version (id_number, name, benefit_type, status, first_paid_on, deceased_on,
                            imprisoned_from, imprisoned_until, insured_region, recorded_at)
SELECT id_number, name, benefit_type, status, first_paid_on, deceased_on, imprisoned_from,
       imprisoned_until, insured_region, updated_at
FROM roster ORDER BY id_number;
DROP TABLE roster;

-- The current roster: each person's latest version.
CREATE VIEW roster AS
SELECT DISTINCT ON (id_number)
       id_number, name, benefit_type, status, first_paid_on, deceased_on, imprisoned_from,
       imprisoned_until, insured_region, version, recorded_at
FROM roster_version
ORDER BY id_number, version DESC;

------------------------------------------------------------------------------------------
-- Calendar overrides and publications as events
------------------------------------------------------------------------------------------

CREATE TABLE calendar_override_event (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    day         date NOT NULL,
    working     boolean,
    source      text CHECK (source <> ''),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((working IS NULL) = (source IS NULL))
);
COMMENT ON COLUMN calendar_override_event.working IS 'NULL: the override was removed';
CREATE INDEX calendar_override_event_day ON calendar_override_event (day, id DESC);
INSERT INTO calendar_override_event (day, working, source, recorded_at)
SELECT day, working, source, created_at FROM calendar_override ORDER BY created_at, day;
DROP TABLE calendar_override;

CREATE TABLE calendar_publication_event (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    year        integer NOT NULL CHECK (year BETWEEN 1900 AND 2200),
    published   boolean NOT NULL,
    source      text CHECK (source <> ''),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CHECK (published = (source IS NOT NULL))
);
CREATE INDEX calendar_publication_event_year ON calendar_publication_event (year, id DESC);
INSERT INTO calendar_publication_event (year, published, source, recorded_at)
SELECT year, true, source, created_at FROM calendar_published_year ORDER BY created_at, year;
DROP TABLE calendar_published_year;

CREATE VIEW calendar_override AS
SELECT day, working, source, recorded_at AS created_at
FROM (SELECT DISTINCT ON (day) * FROM calendar_override_event ORDER BY day, id DESC) latest
WHERE working IS NOT NULL;

CREATE VIEW calendar_published_year AS
SELECT year, source, recorded_at AS created_at
FROM (SELECT DISTINCT ON (year) * FROM calendar_publication_event ORDER BY year, id DESC) latest
WHERE published;

------------------------------------------------------------------------------------------
-- The projection of certifications waiting for a result, kept by the database
------------------------------------------------------------------------------------------

CREATE FUNCTION pending_on_result() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM pending_certification p
    USING new_rows n
    WHERE p.certification_id = n.certification_id;
    RETURN NULL;
END $$;

CREATE FUNCTION pending_on_deadline_revision() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE pending_certification p
    SET due_date = n.due_date, deadline = n.deadline, provisional = n.provisional
    FROM (SELECT DISTINCT ON (certification_id) * FROM new_rows
          ORDER BY certification_id, id DESC) n
    WHERE p.certification_id = n.certification_id;
    RETURN NULL;
END $$;

CREATE TRIGGER pending_on_result AFTER INSERT ON result
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION pending_on_result();
CREATE TRIGGER pending_on_deadline_revision AFTER INSERT ON deadline_revision
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION pending_on_deadline_revision();
ALTER TABLE result ENABLE ALWAYS TRIGGER pending_on_result;
ALTER TABLE deadline_revision ENABLE ALWAYS TRIGGER pending_on_deadline_revision;

------------------------------------------------------------------------------------------
-- The hash chain
------------------------------------------------------------------------------------------

-- The digests of the rows one statement inserted into one ledger table.
CREATE TABLE ledger_entry (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid               xid8 NOT NULL DEFAULT pg_current_xact_id(),
    table_name        text NOT NULL,
    keys              text[] NOT NULL,
    certification_ids text[] NOT NULL,
    digests           bytea[] NOT NULL,
    CHECK (cardinality(keys) = cardinality(digests)
           AND cardinality(keys) = cardinality(certification_ids))
);
CREATE INDEX ledger_entry_xid ON ledger_entry (xid);
CREATE INDEX ledger_entry_table ON ledger_entry (table_name, id);

-- One link per committed transaction that inserted ledger rows, in commit order. body holds
-- the exact bytes hashed: kind, seq, the previous link's hash, the number of rows and the
-- SHA-256 of their sorted digests, and the commit instant.
CREATE TABLE ledger_link (
    seq            bigint PRIMARY KEY CHECK (seq >= 1),
    xid            xid8 NOT NULL UNIQUE,
    kind           text NOT NULL CHECK (kind IN ('transaction', 'baseline')),
    committed_at   timestamptz NOT NULL,
    entries        bigint NOT NULL,
    prev_sha256    bytea NOT NULL UNIQUE,
    entries_sha256 bytea NOT NULL,
    body           bytea NOT NULL,
    sha256         bytea NOT NULL UNIQUE
);

-- A row's digest: SHA-256 over its table name and its canonical JSON text (nulls dropped, so
-- a column added later with NULLs leaves earlier digests unchanged). Callers evaluate
-- to_jsonb with TimeZone UTC, so the text does not depend on the session.
CREATE FUNCTION ledger_digest(table_name text, row_json jsonb) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN sha256(convert_to(table_name || E'\n' || jsonb_strip_nulls(row_json)::text, 'UTF8'));

-- Whether this transaction is the migration runner's: it set certrecon.migrating to its own
-- transaction id (SET LOCAL) while holding the migration lock.
CREATE FUNCTION ledger_migrating() RETURNS boolean
LANGUAGE sql STABLE SET search_path FROM CURRENT
RETURN current_setting('certrecon.migrating', true) = pg_current_xact_id()::text
   AND EXISTS (SELECT 1 FROM pg_locks
               WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
                 AND classid = 1667592820 AND objid = 1919247215 AND objsubid = 1);

CREATE FUNCTION ledger_capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT SET timezone TO 'UTC' AS $$
DECLARE
    found_keys text[];
    found_certs text[];
    found_digests bytea[];
BEGIN
    EXECUTE format(
        'SELECT array_agg(n.%I::text), array_agg(%s), array_agg(ledger_digest(%L, to_jsonb(n)))'
        ' FROM new_rows n',
        TG_ARGV[0],
        CASE WHEN TG_ARGV[1] = '' THEN 'NULL::text' ELSE format('n.%I', TG_ARGV[1]) END,
        TG_TABLE_NAME)
    INTO found_keys, found_certs, found_digests;
    IF found_keys IS NOT NULL THEN
        INSERT INTO ledger_entry (table_name, keys, certification_ids, digests)
        VALUES (TG_TABLE_NAME, found_keys, found_certs, found_digests);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION ledger_link_body(
    kind text, seq bigint, prev bytea, entries bigint, entries_sha256 bytea, at timestamptz
) RETURNS bytea LANGUAGE sql IMMUTABLE
RETURN convert_to('certrecon-ledger-link/1 ' || kind || E'\n', 'UTF8')
    || int8send(seq) || prev || int8send(entries) || entries_sha256
    || int8send((extract(epoch FROM at) * 1000000)::bigint);

-- At commit (deferred), once per transaction: append the link covering every ledger row the
-- transaction inserted. The lock serialises committing writers, so links follow commit order
-- and each one names the link before it.
CREATE FUNCTION ledger_seal() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    me xid8 := pg_current_xact_id();
    head_seq bigint;
    head_sha bytea;
    n bigint;
    digest bytea;
    at timestamptz;
    link_kind text;
    link_body bytea;
BEGIN
    IF EXISTS (SELECT 1 FROM ledger_link WHERE xid = me) THEN
        RETURN NULL;
    END IF;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'ledger rows must be written in READ COMMITTED transactions'
            USING HINT = 'the hash chain reads the latest link at commit';
    END IF;
    PERFORM pg_advisory_xact_lock(1667592820, 1818584165);
    SELECT l.seq, l.sha256 INTO head_seq, head_sha FROM ledger_link l ORDER BY l.seq DESC LIMIT 1;
    SELECT count(*), sha256(COALESCE(string_agg(d, ''::bytea ORDER BY d), ''::bytea))
    INTO n, digest
    FROM ledger_entry e, unnest(e.digests) AS d
    WHERE e.xid = me;
    at := date_trunc('milliseconds', clock_timestamp());
    link_kind := CASE WHEN ledger_migrating() AND current_setting('certrecon.baseline', true) = 'on'
                      THEN 'baseline' ELSE 'transaction' END;
    head_seq := COALESCE(head_seq, 0) + 1;
    head_sha := COALESCE(head_sha, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);
    link_body := ledger_link_body(link_kind, head_seq, head_sha, n, digest, at);
    INSERT INTO ledger_link (seq, xid, kind, committed_at, entries, prev_sha256, entries_sha256,
                             body, sha256)
    VALUES (head_seq, me, link_kind, at, n, head_sha, digest, link_body, sha256(link_body));
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_seal AFTER INSERT ON ledger_entry
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_seal();
ALTER TABLE ledger_entry ENABLE ALWAYS TRIGGER ledger_seal;

-- At commit, once per statement that stored certifications: those still without a result
-- wait for one.
CREATE FUNCTION pending_on_certification() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO pending_certification
    SELECT c.certification_id, c.channel, c.local_date, d.due_date, d.deadline, d.provisional
    FROM unnest(NEW.keys) AS k(certification_id)
    JOIN certification c ON c.certification_id = k.certification_id
    JOIN certification_deadline d ON d.certification_id = k.certification_id
    WHERE NOT EXISTS (SELECT 1 FROM result r WHERE r.certification_id = k.certification_id)
    ON CONFLICT (certification_id) DO NOTHING;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER pending_on_certification AFTER INSERT ON ledger_entry
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.table_name = 'certification')
    EXECUTE FUNCTION pending_on_certification();
ALTER TABLE ledger_entry ENABLE ALWAYS TRIGGER pending_on_certification;

------------------------------------------------------------------------------------------
-- Refusals: no UPDATE, DELETE or TRUNCATE on a ledger table, whoever asks
------------------------------------------------------------------------------------------

CREATE FUNCTION ledger_refuse() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF ledger_migrating() THEN
        RETURN CASE WHEN TG_LEVEL = 'STATEMENT' THEN NULL
                    WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    RAISE EXCEPTION '% on ledger table % refused: ledger rows are never changed or removed',
        TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'record a new fact instead; only a migration may lift this';
END $$;

-- The ledger tables and how verification names their rows.
CREATE TABLE ledger_table (
    table_name           text PRIMARY KEY,
    key_column           text NOT NULL,
    certification_column text,
    chained              boolean NOT NULL
);

-- Protects a ledger table and, when chained, chains what is inserted into it.
CREATE FUNCTION ledger_protect(tbl regclass, key_column text, certification_column text,
                               chained boolean DEFAULT true) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT SET timezone TO 'UTC' AS $$
DECLARE
    name text := (SELECT relname FROM pg_class WHERE oid = tbl);
    cert text := CASE WHEN certification_column IS NULL THEN 'NULL::text'
                      ELSE format('t.%I', certification_column) END;
BEGIN
    INSERT INTO ledger_table VALUES (name, key_column, certification_column, chained);
    EXECUTE format('CREATE TRIGGER ledger_refuse_row BEFORE UPDATE OR DELETE ON %s'
                   ' FOR EACH ROW EXECUTE FUNCTION ledger_refuse()', tbl);
    EXECUTE format('CREATE TRIGGER ledger_refuse_truncate BEFORE TRUNCATE ON %s'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse()', tbl);
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER ledger_refuse_row', tbl);
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER ledger_refuse_truncate', tbl);
    IF NOT chained THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TRIGGER ledger_capture AFTER INSERT ON %s'
                   ' REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT'
                   ' EXECUTE FUNCTION ledger_capture(%L, %L)',
                   tbl, key_column, COALESCE(certification_column, ''));
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER ledger_capture', tbl);
    -- The rows already there are sealed as this migration's baseline: covered from now on,
    -- with no claim about their history before it.
    EXECUTE format(
        'INSERT INTO ledger_entry (table_name, keys, certification_ids, digests)'
        ' SELECT %L, array_agg(k), array_agg(c), array_agg(d) FROM ('
        '   SELECT t.%I::text AS k, %s AS c, ledger_digest(%L, to_jsonb(t)) AS d,'
        '          (row_number() OVER () - 1) / 10000 AS chunk'
        '   FROM %s t) x'
        ' GROUP BY chunk',
        name, key_column, cert, name, tbl);
END $$;

-- The chain's own tables first: the baseline below queues their commit-time triggers.
SELECT ledger_protect('ledger_entry', 'id', NULL, false);
SELECT ledger_protect('ledger_link', 'seq', NULL, false);
SELECT ledger_protect('ledger_table', 'table_name', NULL, false);
SELECT set_config('certrecon.baseline', 'on', true);
SELECT ledger_protect('certification', 'certification_id', 'certification_id');
SELECT ledger_protect('decision', 'certification_id', 'certification_id');
SELECT ledger_protect('result', 'result_id', 'certification_id');
SELECT ledger_protect('review_item', 'certification_id', 'certification_id');
SELECT ledger_protect('staff_decision', 'id', 'certification_id');
SELECT ledger_protect('deadline_revision', 'id', 'certification_id');
SELECT ledger_protect('outbox', 'message_id', NULL);
SELECT ledger_protect('outbox_ack', 'message_id', NULL);
SELECT ledger_protect('outbox_failure', 'message_id', NULL);
SELECT ledger_protect('sla_alert', 'alert_id', 'certification_id');
SELECT ledger_protect('roster_version', 'version', NULL);
SELECT ledger_protect('calendar_override_event', 'id', NULL);
SELECT ledger_protect('calendar_publication_event', 'id', NULL);
