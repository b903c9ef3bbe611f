-- Deadline monitor and staff review: SLA alerts raised once, the monitor's last run, staff
-- decisions on review items, and indexes for the monitor's set-based queries.

-- One row per alert ever raised. alert_id is '<certification_id>:<level>', so an alert of a
-- level exists at most once per certification, whichever replica or restart raises it.
CREATE TABLE sla_alert (
    alert_id          text PRIMARY KEY,
    certification_id  text NOT NULL REFERENCES certification,
    level             text NOT NULL CHECK (level IN ('at_risk', 'breached')),
    due_date          date NOT NULL,
    deadline          timestamptz NOT NULL,
    working_days_left integer NOT NULL,
    provisional       boolean NOT NULL,
    raised_at         timestamptz NOT NULL,
    UNIQUE (certification_id, level),
    CHECK (alert_id = certification_id || ':' || level)
);
CREATE INDEX sla_alert_raised ON sla_alert (raised_at);

-- The monitor's bookkeeping, one row per monitor name: the age of the last run is an
-- operations signal whichever replica ran it.
CREATE TABLE monitor_run (
    name        text PRIMARY KEY,
    last_run_at timestamptz NOT NULL,
    duration_ms double precision NOT NULL,
    alerts      integer NOT NULL,
    ran_by      text NOT NULL
);

-- A staff decision closes a review item; results keep every revision, this row the latest.
ALTER TABLE review_queue
    ADD COLUMN outcome    text,
    ADD COLUMN decided_by text CHECK (decided_by ~ '^staff:.+'),
    ADD COLUMN note       text,
    ADD CONSTRAINT review_queue_decided CHECK (outcome IS NULL OR closed_at IS NOT NULL),
    ADD CONSTRAINT review_queue_decided_by CHECK ((outcome IS NULL) = (decided_by IS NULL));

-- Open certifications by due date: the at-risk window is a range scan, the per-level
-- counts an index-only scan, and the oldest open certification the first entry.
CREATE INDEX certification_open_due ON certification (due_date)
    INCLUDE (deadline, channel, local_date) WHERE returned_at IS NULL;

-- Open certifications whose deadline rests on an unpublished schedule, recomputed when it
-- arrives; few at any time, so a small index.
CREATE INDEX certification_open_provisional ON certification (due_date)
    WHERE returned_at IS NULL AND provisional;
