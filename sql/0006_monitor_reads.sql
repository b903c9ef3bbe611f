-- The deadline monitor's reads at a million open certifications, after the ledger (0004).
--
-- 1. open_certification finds the first results still in the relay's backlog by reading
--    result rows only: the backlog of other kinds (thousands of SLA alerts just raised,
--    say) is skipped inside the range of the (xid, id) index instead of being copied out,
--    payload and all, and checked for acknowledgements row by row.
-- 2. Its two parts are views of their own, so the per-level counts aggregate each apart:
--    the pending projection in a parallel scan, as the open certifications were counted
--    before the ledger. (The old backlog function, PARALLEL UNSAFE by default, kept any
--    query that named it serial; the new one is PARALLEL RESTRICTED: it runs in the leader.)
-- 3. The outbox gauge is counted where the backlog is read, without copying its rows.
-- 4. sla_alert_raised served no query; every alert paid for it.

-- The message ids of the backlog rows of one kind (see outbox_backlog_rows).
CREATE FUNCTION outbox_backlog_ids(of_kind text) RETURNS SETOF text
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 100 SET search_path FROM CURRENT AS $$
DECLARE
    at_xid xid8;
    at_id bigint;
BEGIN
    SELECT last_xid, last_id INTO at_xid, at_id FROM relay_cursor WHERE name = 'outbox';
    RETURN QUERY EXECUTE
        'SELECT o.message_id FROM outbox o WHERE (o.xid, o.id) > ($1, $2) AND o.kind = $3'
        ' AND NOT EXISTS (SELECT 1 FROM outbox_ack a WHERE a.message_id = o.message_id)'
        ' AND NOT EXISTS (SELECT 1 FROM outbox_failure f WHERE f.message_id = o.message_id)'
        USING at_xid, at_id, of_kind;
END $$;

-- The backlog by kind: how many, and when the oldest was queued.
CREATE FUNCTION outbox_backlog_by_kind()
RETURNS TABLE (kind text, messages bigint, oldest timestamptz)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 4 SET search_path FROM CURRENT AS $$
DECLARE
    at_xid xid8;
    at_id bigint;
BEGIN
    SELECT last_xid, last_id INTO at_xid, at_id FROM relay_cursor WHERE name = 'outbox';
    RETURN QUERY EXECUTE
        'SELECT o.kind, count(*), min(o.created_at) FROM outbox o'
        ' WHERE (o.xid, o.id) > ($1, $2)'
        ' AND NOT EXISTS (SELECT 1 FROM outbox_ack a WHERE a.message_id = o.message_id)'
        ' AND NOT EXISTS (SELECT 1 FROM outbox_failure f WHERE f.message_id = o.message_id)'
        ' GROUP BY o.kind'
        USING at_xid, at_id;
END $$;

-- Open certifications that have a result the broker has not acknowledged: the first result
-- waits in the relay's backlog, or the broker refused it for good (a person must look; the
-- deadline still runs). Few at any time, whatever the history.
CREATE VIEW open_certification_with_result AS
SELECT c.certification_id, c.channel, c.local_date, d.due_date, d.deadline, d.provisional
FROM (SELECT b.message_id FROM outbox_backlog_ids('result') AS b(message_id)
      UNION ALL
      SELECT f.message_id FROM outbox_failure f
      WHERE NOT EXISTS (SELECT 1 FROM outbox_ack a WHERE a.message_id = f.message_id)) o
JOIN result r ON r.result_id = o.message_id AND r.revision = 1
JOIN certification c ON c.certification_id = r.certification_id
JOIN certification_deadline d ON d.certification_id = r.certification_id;

-- Open certifications (no result acknowledged): those waiting for a result, and those above.
-- A query that aggregates the whole open set reads the two apart, so the large part, the
-- pending projection, can be scanned in parallel.
CREATE OR REPLACE VIEW open_certification AS
SELECT p.certification_id, p.channel, p.local_date, p.due_date, p.deadline, p.provisional
FROM pending_certification p
UNION ALL
SELECT * FROM open_certification_with_result;

DROP INDEX sla_alert_raised;
