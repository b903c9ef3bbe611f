-- An evidence file is recorded chunk by chunk inside its one transaction, so the server
-- inserts one chunk while the importer reads and checks the next. The projection's share of
-- each chunk would be paid again and again (a person's proof of life spread over many
-- chunks, the findings re-read for every chunk), so an import defers it to one merge over
-- everything it recorded, just before its checks let it commit.

-- Whether this transaction is an evidence import that defers the projection: it set
-- certrecon.evidence_import to its own transaction id (set_config, local).
CREATE FUNCTION cycle_evidence_deferred() RETURNS boolean
LANGUAGE sql STABLE
RETURN COALESCE(current_setting('certrecon.evidence_import', true)
                = pg_current_xact_id()::text, false);

-- The projection's trigger on comparison_evidence as 0009 created it, silent for a
-- deferring import (a statement trigger's WHEN runs before its function, once per
-- statement).
DROP TRIGGER cycle_person ON comparison_evidence;
CREATE TRIGGER cycle_person AFTER INSERT ON comparison_evidence
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    WHEN (NOT cycle_evidence_deferred())
    EXECUTE FUNCTION cycle_on_evidence();
ALTER TABLE comparison_evidence ENABLE ALWAYS TRIGGER cycle_person;

-- The deferred projection of a deferring import, once: what cycle_on_evidence does for one
-- statement's rows, for every comparison_evidence row this transaction inserted. Those rows
-- are named by the transaction's own ledger entries (written by the ledger's capture
-- trigger, under the transaction's id), so no caller can point it at other rows; the
-- deferral ends with it, and a second call is refused rather than merging the days twice.
CREATE FUNCTION cycle_on_evidence_import() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    ids bigint[];
    adverse text[];
    merged bigint;
BEGIN
    IF NOT cycle_evidence_deferred() THEN
        RAISE EXCEPTION 'this transaction defers no evidence projection'
            USING HINT = 'an evidence import sets certrecon.evidence_import to its transaction id';
    END IF;
    PERFORM set_config('certrecon.evidence_import', '', true);
    -- In order, so that the index scan walks the primary key once from the first to the last.
    ids := ARRAY(SELECT k::bigint FROM ledger_entry l, unnest(l.keys) AS k
                 WHERE l.xid = pg_current_xact_id() AND l.table_name = 'comparison_evidence'
                 ORDER BY 1);
    WITH mine AS MATERIALIZED (
        SELECT e.id_number, e.kind, e.event_date FROM comparison_evidence e WHERE e.id = ANY (ids)
    ),
    proof AS (
        INSERT INTO cycle_person AS p (id_number, proof_days)
        SELECT id_number COLLATE "C", array_agg(event_date ORDER BY event_date)
        FROM mine WHERE kind = 'proof_of_life'
        GROUP BY id_number COLLATE "C" ORDER BY id_number COLLATE "C"
        ON CONFLICT (id_number) DO UPDATE
        SET proof_days = cycle_days_merge(p.proof_days, EXCLUDED.proof_days)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM proof),
           (SELECT array_agg(DISTINCT id_number COLLATE "C") FROM mine
            WHERE kind IN ('death', 'imprisonment', 'release'))
    INTO merged, adverse;
    IF adverse IS NOT NULL THEN
        PERFORM cycle_person_refresh_findings(adverse);
    END IF;
    RETURN merged;
END $$;

-- At commit: an import that deferred the projection has merged it. Checked once per
-- statement that inserted evidence (its ledger entry), so a transaction that set the marker
-- and recorded evidence cannot commit with the projection left behind.
CREATE FUNCTION cycle_evidence_projected() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF cycle_evidence_deferred() THEN
        RAISE EXCEPTION 'evidence recorded with its projection deferred and never merged'
            USING HINT = 'call cycle_on_evidence_import() before committing';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER cycle_evidence_projected AFTER INSERT ON ledger_entry
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.table_name = 'comparison_evidence')
    EXECUTE FUNCTION cycle_evidence_projected();
ALTER TABLE ledger_entry ENABLE ALWAYS TRIGGER cycle_evidence_projected;
