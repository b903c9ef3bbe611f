-- The certification cycle as ledger facts: comparison evidence, the person-level review
-- items it opens, staff verdicts on it, assisted certifications, benefit actions, and the
-- roster's optional suspended_on column. Every table here is insert-only, refused
-- UPDATE/DELETE/TRUNCATE and hash-chained (ledger_protect, 0004, with its digest columns
-- as 0005 digests rows); who is certified, under review or lost is derived from these rows
-- (store/cycle.py). These tables are low-volume: a capture trigger records their digests
-- (format 2, in SQL), as for the other low-volume tables.

------------------------------------------------------------------------------------------
-- Comparison evidence
------------------------------------------------------------------------------------------

-- One row per (source, evidence_id): a repeat with the same content adds nothing, a repeat
-- with different content is refused by the code before it gets here (and by the UNIQUE).
CREATE TABLE comparison_evidence (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source          text NOT NULL CHECK (source <> '' AND length(source) <= 128),
    evidence_id     text NOT NULL CHECK (evidence_id ~ '^[A-Za-z0-9_:.-]{1,64}$'),
    kind            text NOT NULL
                    CHECK (kind IN ('death', 'imprisonment', 'release', 'proof_of_life')),
    id_number       text NOT NULL CHECK (id_number <> ''),
    name            text NOT NULL CHECK (name <> ''),
    event_date      date NOT NULL,
    observed_at     timestamptz,
    -- Where it came from: a topic position (with the original bytes) or a file line.
    via             text NOT NULL CHECK (via IN ('topic', 'file')),
    topic           text,
    kafka_partition integer,
    kafka_offset    bigint,
    raw             bytea,
    file_name       text,
    file_sha256     bytea,
    file_line       bigint,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, evidence_id),
    CHECK (via <> 'topic' OR (topic IS NOT NULL AND kafka_partition IS NOT NULL
                              AND kafka_offset IS NOT NULL AND raw IS NOT NULL)),
    CHECK (via <> 'file' OR (file_name IS NOT NULL AND file_sha256 IS NOT NULL
                             AND file_line IS NOT NULL))
);
CREATE INDEX comparison_evidence_person ON comparison_evidence (id_number, kind, event_date);

-- A person-level review item (逐人核实): death or imprisonment evidence put the person
-- before staff. Whether it is still open is derived: no verdict names the evidence yet and
-- no release ended the imprisonment.
CREATE TABLE evidence_review_item (
    evidence_ref bigint PRIMARY KEY REFERENCES comparison_evidence (id),
    id_number    text NOT NULL,
    queued_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX evidence_review_item_person ON evidence_review_item (id_number);

-- A staff verdict on one piece of adverse evidence; one decision on a person's item adds a
-- row for every piece it covered (same decision_id). The first verdict naming a piece stands.
CREATE TABLE evidence_verdict (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    decision_id    text NOT NULL,
    evidence_ref   bigint NOT NULL REFERENCES evidence_review_item (evidence_ref),
    verdict        text NOT NULL CHECK (verdict IN ('confirmed', 'rejected')),
    effective_date date,
    decided_by     text NOT NULL CHECK (decided_by ~ '^staff:.+'),
    login          text,
    note           text,
    decided_at     timestamptz NOT NULL,
    CHECK ((verdict = 'confirmed') = (effective_date IS NOT NULL)),
    UNIQUE (decision_id, evidence_ref)
);
CREATE INDEX evidence_verdict_evidence ON evidence_verdict (evidence_ref, id);

------------------------------------------------------------------------------------------
-- Assisted certifications (线下协助认证)
------------------------------------------------------------------------------------------

CREATE TABLE assisted_certification (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id_number    text NOT NULL CHECK (id_number <> ''),
    how          text NOT NULL CHECK (how IN ('offline', 'home_visit', 'embassy_papers')),
    certified_at timestamptz NOT NULL,
    local_date   date NOT NULL,
    decided_by   text NOT NULL CHECK (decided_by ~ '^staff:.+'),
    login        text,
    note         text,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (local_date = (certified_at AT TIME ZONE 'Asia/Shanghai')::date)
);
CREATE INDEX assisted_certification_person ON assisted_certification (id_number, local_date);

-- Staff facts carry the authenticated login, whatever the inserting statement said.
CREATE FUNCTION ledger_session_login() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    NEW.login := session_user;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_session_login BEFORE INSERT ON evidence_verdict
    FOR EACH ROW EXECUTE FUNCTION ledger_session_login();
CREATE TRIGGER ledger_session_login BEFORE INSERT ON assisted_certification
    FOR EACH ROW EXECUTE FUNCTION ledger_session_login();
ALTER TABLE evidence_verdict ENABLE ALWAYS TRIGGER ledger_session_login;
ALTER TABLE assisted_certification ENABLE ALWAYS TRIGGER ledger_session_login;

------------------------------------------------------------------------------------------
-- Benefit actions
------------------------------------------------------------------------------------------

-- What the payment system was told, once per action_id; the message itself is in the outbox
-- under the same id.
CREATE TABLE benefit_action (
    action_id      text PRIMARY KEY CHECK (action_id ~ '^[0-9A-Z]{15,18}:[0-9]{4}:(resume|stop)$'),
    action         text NOT NULL CHECK (action IN ('resume', 'stop')),
    id_number      text NOT NULL,
    year           integer NOT NULL,
    reason         text NOT NULL CHECK (reason <> ''),
    decided_by     text NOT NULL CHECK (decided_by ~ '^(rules|staff:.+)$'),
    suspended_on   date,
    effective_date date,
    basis          text,
    basis_date     date,
    raised_at      timestamptz NOT NULL,
    CHECK (action <> 'stop' OR effective_date IS NOT NULL)
);
CREATE INDEX benefit_action_person ON benefit_action (id_number);

ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check
    CHECK (kind IN ('result', 'dead_letter', 'sla_alert', 'audit_checkpoint', 'benefit_action'));

------------------------------------------------------------------------------------------
-- The roster's optional suspended_on column
------------------------------------------------------------------------------------------

-- A column added to a digested table after rows were digested: the rows recorded before it
-- have no value there, and their digests were taken over the columns they had. Such a
-- column is an optional trailing digest column: included in a row's encoding only when it
-- (or an optional column after it) is not NULL. A row with the column NULL digests exactly
-- as before; setting it on an old row, or clearing it on a new one, changes the encoded
-- column count and so the digest. certrecon.audit.digest applies the same rule.
ALTER TABLE roster_version ADD COLUMN suspended_on date;

ALTER TABLE ledger_table ADD COLUMN optional_columns integer NOT NULL DEFAULT 0
    CHECK (optional_columns >= 0);
COMMENT ON COLUMN ledger_table.optional_columns IS
    'how many of digest_columns, at the end, are encoded only up to the last one not NULL';
UPDATE ledger_table
SET digest_columns = digest_columns || ARRAY['suspended_on'], optional_columns = 1
WHERE table_name = 'roster_version';

-- record_send(ROW(...)) of a ledger table's digest columns, as SQL over the alias "n",
-- leaving out the optional trailing columns from the last one not NULL on.
CREATE OR REPLACE FUNCTION ledger_row_bytes_sql(tbl text, alias text) RETURNS text
LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
DECLARE
    cols text[];
    optional integer;
    required integer;
    expr text := NULL;
    k integer;
BEGIN
    SELECT t.digest_columns, t.optional_columns INTO cols, optional
    FROM ledger_table t WHERE t.table_name = tbl;
    IF cols IS NULL THEN
        RETURN NULL;
    END IF;
    required := cardinality(cols) - optional;
    -- From all columns down to the required ones: each shorter ROW when the columns it
    -- leaves out are all NULL.
    FOR k IN REVERSE cardinality(cols)..required LOOP
        IF expr IS NULL THEN
            expr := format('record_send(ROW(%s))',
                           (SELECT string_agg(format('%I.%I', alias, c), ', ' ORDER BY i)
                            FROM unnest(cols[1:k]) WITH ORDINALITY AS u(c, i)));
        ELSE
            expr := format('CASE WHEN %s THEN record_send(ROW(%s)) ELSE %s END',
                           (SELECT string_agg(format('%I.%I IS NULL', alias, c), ' AND ')
                            FROM unnest(cols[k + 1:]) AS u(c)),
                           (SELECT string_agg(format('%I.%I', alias, c), ', ' ORDER BY i)
                            FROM unnest(cols[1:k]) WITH ORDINALITY AS u(c, i)),
                           expr);
        END IF;
    END LOOP;
    RETURN expr;
END $$;

CREATE OR REPLACE VIEW roster AS
SELECT DISTINCT ON (id_number)
       id_number, name, benefit_type, status, first_paid_on, deceased_on, imprisoned_from,
       imprisoned_until, insured_region, version, recorded_at, suspended_on
FROM roster_version
ORDER BY id_number, version DESC;

------------------------------------------------------------------------------------------
-- Protection and the chain
------------------------------------------------------------------------------------------

-- ledger_protect as 0004 defined it, with the table's digest columns (0005) and any rows
-- already there sealed in format 2.
DROP FUNCTION ledger_protect(regclass, text, text, boolean);
CREATE FUNCTION ledger_protect(tbl regclass, key_column text, certification_column text,
                               digest_columns text[]) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT SET timezone TO 'UTC' AS $$
DECLARE
    name text := (SELECT relname FROM pg_class WHERE oid = tbl);
    cert text := CASE WHEN certification_column IS NULL THEN 'NULL::text'
                      ELSE format('t.%I', certification_column) END;
BEGIN
    INSERT INTO ledger_table (table_name, key_column, certification_column, chained,
                              digest_columns)
    VALUES (name, key_column, certification_column, true, digest_columns);
    EXECUTE format('CREATE TRIGGER ledger_refuse_row BEFORE UPDATE OR DELETE ON %s'
                   ' FOR EACH ROW EXECUTE FUNCTION ledger_refuse()', tbl);
    EXECUTE format('CREATE TRIGGER ledger_refuse_truncate BEFORE TRUNCATE ON %s'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse()', tbl);
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER ledger_refuse_row', tbl);
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER ledger_refuse_truncate', tbl);
    EXECUTE format('CREATE TRIGGER ledger_capture AFTER INSERT ON %s'
                   ' REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT'
                   ' EXECUTE FUNCTION ledger_capture(%L, %L)',
                   tbl, key_column, COALESCE(certification_column, ''));
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER ledger_capture', tbl);
    EXECUTE format(
        'INSERT INTO ledger_entry (table_name, keys, certification_ids, digests, format)'
        ' SELECT %L, array_agg(k), array_agg(c), array_agg(d), 2 FROM ('
        '   SELECT t.%I::text AS k, %s AS c, sha256(%L::bytea || %s) AS d,'
        '          (row_number() OVER () - 1) / 10000 AS chunk'
        '   FROM %s t) x'
        ' GROUP BY chunk',
        name, key_column, cert, convert_to('certrecon-row/2 ' || name || E'\n', 'UTF8'),
        ledger_row_bytes_sql(name, 't'), tbl);
END $$;

SELECT ledger_protect('comparison_evidence', 'id', NULL, ARRAY['id', 'source', 'evidence_id',
    'kind', 'id_number', 'name', 'event_date', 'observed_at', 'via', 'topic',
    'kafka_partition', 'kafka_offset', 'raw', 'file_name', 'file_sha256', 'file_line',
    'recorded_at']);
SELECT ledger_protect('evidence_review_item', 'evidence_ref', NULL,
    ARRAY['evidence_ref', 'id_number', 'queued_at']);
SELECT ledger_protect('evidence_verdict', 'id', NULL, ARRAY['id', 'decision_id',
    'evidence_ref', 'verdict', 'effective_date', 'decided_by', 'login', 'note',
    'decided_at']);
SELECT ledger_protect('assisted_certification', 'id', NULL, ARRAY['id', 'id_number', 'how',
    'certified_at', 'local_date', 'decided_by', 'login', 'note', 'recorded_at']);
SELECT ledger_protect('benefit_action', 'action_id', NULL, ARRAY['action_id', 'action',
    'id_number', 'year', 'reason', 'decided_by', 'suspended_on', 'effective_date', 'basis',
    'basis_date', 'raised_at']);
