-- Row digests computed by the writers over the bytes they store, not by triggers over to_jsonb.
--
-- A row's digest (format 2) is SHA-256 of 'certrecon-row/2 <table>' || E'\n' ||
-- record_send(ROW(<digest columns>)): PostgreSQL's own binary encoding of the stored values,
-- so no re-serialisation stands between the bytes kept and the bytes hashed
-- (certrecon.audit.digest defines it; the lists below are the same). The worker's tables are
-- written by the application, which computes the digests of a batch in one pass and records
-- them with the batch (one ledger_entry per table and statement): no trigger on those tables
-- reads the rows again. The low-volume tables (staff decisions, deadline revisions, alerts,
-- roster versions, calendar events) keep a capture trigger, now computing format 2.
--
-- Rows recorded before this migration keep their format 1 digests (to_jsonb), labelled by
-- ledger_entry.format, and verification checks each row by the format it was recorded in:
-- nothing is re-hashed, no link changes. A row that no entry covers, a changed row, a
-- removed row or two swapped rows are still found by verification, which recomputes every
-- row's digest from the row as stored and matches rows to entries one to one.

ALTER TABLE ledger_entry ADD COLUMN format smallint NOT NULL DEFAULT 1
    CHECK (format IN (1, 2));
ALTER TABLE ledger_entry ALTER COLUMN format SET DEFAULT 2;
COMMENT ON COLUMN ledger_entry.format IS
    '1: digests over to_jsonb (sql/0004); 2: over record_send of the digest columns';

-- Verification reads entries by table; links find their entries by xid.
DROP INDEX ledger_entry_table;

ALTER TABLE ledger_table ADD COLUMN digest_columns text[];
UPDATE ledger_table t SET digest_columns = c.columns
FROM (VALUES
    ('certification', ARRAY['certification_id', 'channel', 'topic', 'kafka_partition',
        'kafka_offset', 'id_number', 'valid', 'certified_at', 'certified_at_raw', 'local_date',
        'due_date', 'deadline', 'provisional', 'content_sha256', 'raw', 'received_at']),
    ('decision', ARRAY['certification_id', 'outcome', 'review_reason', 'reason', 'rule',
        'rule_version', 'evidence', 'decided_at', 'roster_version']),
    ('result', ARRAY['certification_id', 'revision', 'result_id', 'outcome', 'reason',
        'decided_at', 'decided_by', 'note', 'payload']),
    ('review_item', ARRAY['certification_id', 'reason', 'queued_at']),
    ('outbox', ARRAY['message_id', 'kind', 'topic', 'key', 'payload']),
    ('outbox_ack', ARRAY['message_id', 'acked_at']),
    ('outbox_failure', ARRAY['message_id', 'reason', 'failed_at']),
    ('staff_decision', ARRAY['id', 'certification_id', 'result_id', 'outcome', 'decided_by',
        'login', 'note', 'decided_at']),
    ('deadline_revision', ARRAY['id', 'certification_id', 'due_date', 'deadline',
        'provisional', 'recorded_at']),
    ('sla_alert', ARRAY['alert_id', 'certification_id', 'level', 'due_date', 'deadline',
        'working_days_left', 'provisional', 'raised_at']),
    ('roster_version', ARRAY['version', 'id_number', 'name', 'benefit_type', 'status',
        'first_paid_on', 'deceased_on', 'imprisoned_from', 'imprisoned_until',
        'insured_region', 'recorded_at']),
    ('calendar_override_event', ARRAY['id', 'day', 'working', 'source', 'recorded_at']),
    ('calendar_publication_event', ARRAY['id', 'year', 'published', 'source', 'recorded_at'])
) AS c(name, columns)
WHERE t.table_name = c.name;
ALTER TABLE ledger_table ADD CONSTRAINT ledger_table_digest_columns
    CHECK (NOT chained OR digest_columns IS NOT NULL);

-- record_send(ROW(...)) of a ledger table's digest columns, as SQL over the alias "n".
CREATE FUNCTION ledger_row_bytes_sql(tbl text, alias text) RETURNS text
LANGUAGE sql STABLE SET search_path FROM CURRENT
RETURN (SELECT 'record_send(ROW(' || string_agg(format('%I.%I', alias, c), ', ' ORDER BY i)
               || '))'
        FROM ledger_table t, unnest(t.digest_columns) WITH ORDINALITY AS u(c, i)
        WHERE t.table_name = tbl);

-- Format 2, for the low-volume tables whose rows the database digests at insert.
CREATE OR REPLACE FUNCTION ledger_capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    found_keys text[];
    found_certs text[];
    found_digests bytea[];
BEGIN
    EXECUTE format(
        'SELECT array_agg(n.%I::text), array_agg(%s),'
        '       array_agg(sha256(%L::bytea || %s)) FROM new_rows n',
        TG_ARGV[0],
        CASE WHEN TG_ARGV[1] = '' THEN 'NULL::text' ELSE format('n.%I', TG_ARGV[1]) END,
        convert_to('certrecon-row/2 ' || TG_TABLE_NAME || E'\n', 'UTF8'),
        ledger_row_bytes_sql(TG_TABLE_NAME, 'n'))
    INTO found_keys, found_certs, found_digests;
    IF found_keys IS NOT NULL THEN
        INSERT INTO ledger_entry (table_name, keys, certification_ids, digests, format)
        VALUES (TG_TABLE_NAME, found_keys, found_certs, found_digests, 2);
    END IF;
    RETURN NULL;
END $$;

-- The worker's tables: their writers record the digests.
DROP TRIGGER ledger_capture ON certification;
DROP TRIGGER ledger_capture ON decision;
DROP TRIGGER ledger_capture ON result;
DROP TRIGGER ledger_capture ON review_item;
DROP TRIGGER ledger_capture ON outbox;
DROP TRIGGER ledger_capture ON outbox_ack;
DROP TRIGGER ledger_capture ON outbox_failure;

-- Digests and keys do not compress: their arrays are stored out of line as they are.
ALTER TABLE ledger_entry ALTER COLUMN digests SET STORAGE EXTERNAL;

------------------------------------------------------------------------------------------
-- The projection of certifications waiting for a result, from the entries alone
------------------------------------------------------------------------------------------

-- At commit, per statement that stored certifications: those without a result wait for one.
-- A certification's first result is written in the transaction that stores it or later, so
-- the results this transaction recorded (its result entries, already in memory) rule out
-- nearly all of a worker batch before any row is looked up.
CREATE OR REPLACE FUNCTION pending_on_certification() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO pending_certification
    SELECT c.certification_id, c.channel, c.local_date, d.due_date, d.deadline, d.provisional
    FROM (SELECT k FROM unnest(NEW.keys) AS k
          EXCEPT
          SELECT unnest(e.certification_ids) FROM ledger_entry e
          WHERE e.xid = NEW.xid AND e.table_name = 'result') AS w(certification_id)
    JOIN certification c ON c.certification_id = w.certification_id
    JOIN certification_deadline d ON d.certification_id = w.certification_id
    WHERE NOT EXISTS (SELECT 1 FROM result r WHERE r.certification_id = w.certification_id)
    ON CONFLICT (certification_id) DO NOTHING;
    RETURN NULL;
END $$;

-- A result ends the wait, read from its entry at commit instead of a transition table of
-- every result row (which the worker's batches would fill for nothing).
DROP TRIGGER pending_on_result ON result;
DROP FUNCTION pending_on_result();

CREATE FUNCTION pending_on_result_entry() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM pending_certification p
    WHERE p.certification_id = ANY (NEW.certification_ids);
    RETURN NULL;
END $$;

-- Named after pending_on_certification, so at commit it runs after it for one transaction's
-- entries (triggers on one event fire in name order; entries in insertion order).
CREATE CONSTRAINT TRIGGER pending_on_result_entry AFTER INSERT ON ledger_entry
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.table_name = 'result')
    EXECUTE FUNCTION pending_on_result_entry();
ALTER TABLE ledger_entry ENABLE ALWAYS TRIGGER pending_on_result_entry;
