-- Initial schema: roster, certifications, decisions, results, review queue, outbox,
-- consumer offsets and calendar overrides.

CREATE TABLE roster (
    id_number        text PRIMARY KEY,
    name             text NOT NULL,
    benefit_type     text NOT NULL,
    status           text NOT NULL CHECK (status IN ('active', 'suspended', 'terminated')),
    first_paid_on    date,
    deceased_on      date,
    imprisoned_from  date,
    imprisoned_until date,
    insured_region   text CHECK (insured_region ~ '^[0-9]{6}$'),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Every inbound message that carried a usable certification_id, valid or not.
CREATE TABLE certification (
    certification_id text PRIMARY KEY,
    channel          text NOT NULL,
    topic            text NOT NULL,
    kafka_partition  integer NOT NULL,
    kafka_offset     bigint NOT NULL,
    id_number        text,
    valid            boolean NOT NULL,
    certified_at     timestamptz,
    certified_at_raw text,
    local_date       date NOT NULL,
    due_date         date NOT NULL,
    deadline         timestamptz NOT NULL,
    provisional      boolean NOT NULL,
    content_sha256   bytea NOT NULL,
    raw              bytea NOT NULL,
    received_at      timestamptz NOT NULL,
    returned_at      timestamptz,
    on_time          boolean
);
CREATE INDEX certification_open_deadline ON certification (deadline) WHERE returned_at IS NULL;

-- What the rules decided, with the evidence an auditor needs to re-derive it.
CREATE TABLE decision (
    certification_id text PRIMARY KEY REFERENCES certification,
    outcome          text,
    review_reason    text,
    reason           text NOT NULL,
    rule             text NOT NULL,
    rule_version     text NOT NULL,
    evidence         jsonb NOT NULL,
    decided_at       timestamptz NOT NULL,
    CHECK ((outcome IS NULL) <> (review_reason IS NULL))
);

-- Every result revision ever produced; revision 1 by rules or staff, higher ones by staff.
CREATE TABLE result (
    certification_id text NOT NULL REFERENCES certification,
    revision         integer NOT NULL CHECK (revision >= 1),
    result_id        text NOT NULL UNIQUE,
    outcome          text NOT NULL,
    reason           text NOT NULL,
    decided_at       timestamptz NOT NULL,
    decided_by       text NOT NULL,
    note             text,
    payload          jsonb NOT NULL,
    PRIMARY KEY (certification_id, revision)
);

-- Certifications that local death or imprisonment records put before a person (逐人核实).
CREATE TABLE review_queue (
    certification_id text PRIMARY KEY REFERENCES certification,
    reason           text NOT NULL,
    queued_at        timestamptz NOT NULL,
    closed_at        timestamptz
);
CREATE INDEX review_queue_open ON review_queue (queued_at) WHERE closed_at IS NULL;

-- Messages waiting to be published. message_id is deterministic (result_id, alert_id,
-- dead-letter source position), so a re-send after a crash carries the same identity.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    message_id  text NOT NULL UNIQUE,
    kind        text NOT NULL CHECK (kind IN ('result', 'dead_letter', 'sla_alert')),
    topic       text NOT NULL,
    key         bytea,
    payload     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;

-- The next offset to read, committed in the same transaction as the batch's effects.
CREATE TABLE consumer_offset (
    group_id        text NOT NULL,
    topic           text NOT NULL,
    kafka_partition integer NOT NULL,
    next_offset     bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, kafka_partition)
);

-- Operator overrides of the working-day calendar; they beat the shipped data and the
-- holidays package.
CREATE TABLE calendar_override (
    day        date PRIMARY KEY,
    working    boolean NOT NULL,
    source     text NOT NULL CHECK (source <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Years whose official schedule an operator declares published.
CREATE TABLE calendar_published_year (
    year       integer PRIMARY KEY CHECK (year BETWEEN 1900 AND 2200),
    source     text NOT NULL CHECK (source <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);
