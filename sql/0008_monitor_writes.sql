-- The deadline monitor's writes when thousands of alerts are raised in one run.
--
-- 1. The monitor records its alerts' digests as the worker records its rows' (computed from
--    the values it inserts, one ledger_entry per statement), so no capture trigger reads the
--    inserted rows again.
-- 2. An alert's certification is checked once per statement instead of by a foreign key.
--    Ledger rows are never updated or deleted (ledger_refuse), so the key-share lock a
--    foreign key takes on every referenced certification, row by row, guards nothing; what
--    is left of it, that the certification exists, is one probe of its primary key per new
--    alert, in one query.
-- 3. The alert id is the certification and the level (a CHECK), so its primary key already
--    makes them unique and finds a certification's alerts: the second unique index only
--    cost every alert an index insertion.

DROP TRIGGER ledger_capture ON sla_alert;
ALTER TABLE sla_alert DROP CONSTRAINT sla_alert_certification_id_fkey;
ALTER TABLE sla_alert DROP CONSTRAINT sla_alert_certification_id_level_key;

-- The probes go through the primary key whatever the statement's size: a hash join would
-- read every certification to check a handful of alerts.
CREATE FUNCTION sla_alert_certification_exists() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    missing text;
BEGIN
    SELECT n.certification_id INTO missing
    FROM new_rows n
    WHERE NOT EXISTS (SELECT 1 FROM certification c
                      WHERE c.certification_id = n.certification_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert on table "sla_alert" names a certification that does not exist'
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('Key (certification_id)=(%s) is not present in table '
                                  '"certification".', missing);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER sla_alert_certification_exists AFTER INSERT ON sla_alert
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION sla_alert_certification_exists();
ALTER TABLE sla_alert ENABLE ALWAYS TRIGGER sla_alert_certification_exists;
