-- Each person's cycle facts in one row, kept by the database as the ledger grows, so that
-- `cycle status`, `cycle outreach` and `cycle suspend-candidates` read one row per person
-- instead of aggregating the whole ledger (roster versions, certifications and their
-- results, evidence, verdicts, assisted certifications) on every call.
--
-- cycle_person is a projection, like pending_certification: derived state outside the
-- ledger and the hash chain, updatable, written by no role (only by the SECURITY DEFINER
-- trigger functions below), rebuilt from the ledger at will (cycle_person_rebuild()).
-- It holds what any cycle question needs, whatever the mode, year or as-of date:
--
--   the current roster version's columns;
--   cert_days:  the local date of every certification that counts (a valid ministry
--               certification whose latest result is qualified; an assisted certification),
--               sorted, one element per certification;
--   proof_days: the event date of every proof of life, sorted, one element per record;
--   open_reviews: certification review items without a staff decision;
--   evidence_review: death or imprisonment evidence without a verdict (and, for an
--               imprisonment, without a later release);
--   lost:       the days on which confirmed death or imprisonment covers the person
--               ([effective date, release)).
--
-- A question then reads each row with width_bucket (a binary search over the sorted days):
-- the latest certification on or before a day, the latest in a year, and so on.
--
-- Kept current by statement-level triggers with transition tables on the ledger tables,
-- in the writing transaction: whatever writes a fact (worker batch, evidence import, staff
-- decisions, assisted certifications, roster import, a test's bulk load) updates the
-- projection with it. Additions are merged into the row (the common case: a qualified
-- result, proof of life, a roster version); what depends on several facts at once (adverse
-- evidence and its verdicts and releases) is recomputed for the persons concerned after
-- their rows are locked, so concurrent writers of the same person see each other's facts.

-- What a status count reads comes first, fixed-width columns before the others: a scan
-- of millions of rows decodes each row only up to the last column the query needs.
CREATE TABLE cycle_person (
    first_paid_on   date,
    open_reviews    integer NOT NULL DEFAULT 0,
    evidence_review boolean NOT NULL DEFAULT false,
    roster_status   text,
    insured_region  text,
    cert_days       date[],
    proof_days      date[],
    lost            datemultirange,
    id_number       text PRIMARY KEY,
    name            text,
    benefit_type    text,
    roster_version  bigint
);
COMMENT ON TABLE cycle_person IS
    'projection of the ledger per person for the certification cycle (sql/0009); not a ledger table';

-- Sorted days with more days merged in; NULL when there are none.
CREATE FUNCTION cycle_days_merge(days date[], added date[]) RETURNS date[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (SELECT array_agg(d ORDER BY d)
        FROM (SELECT unnest(days) UNION ALL SELECT unnest(added)) AS x(d));

-- Sorted days with one element taken out per element of removed; NULL when none is left.
CREATE FUNCTION cycle_days_remove(days date[], removed date[]) RETURNS date[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (SELECT array_agg(d ORDER BY d)
        FROM (SELECT d, row_number() OVER (PARTITION BY d) AS k FROM unnest(days) AS u(d)) x
        WHERE x.k > (SELECT count(*) FROM unnest(removed) AS r(d) WHERE r.d = x.d));

------------------------------------------------------------------------------------------
-- The derivation from the ledger (backfill, rebuild, and the findings of a few persons)
------------------------------------------------------------------------------------------

-- Adverse evidence of these persons (all when ids is NULL): whether some is still before
-- staff, and the days a confirmed finding covers. An imprisonment is ended by the person's
-- first release dated on or after it; the first verdict naming a piece of evidence stands.
CREATE FUNCTION cycle_person_findings(ids text[])
RETURNS TABLE (id_number text, evidence_review boolean, lost datemultirange)
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT f.id_number,
           bool_or(f.verdict IS NULL AND f.released_on IS NULL),
           range_agg(daterange(f.effective_date, f.released_on))
               FILTER (WHERE f.verdict = 'confirmed'
                         AND (f.released_on IS NULL OR f.effective_date < f.released_on))
    FROM (
        SELECT e.id_number, v.verdict, v.effective_date,
               CASE WHEN e.kind = 'imprisonment' THEN
                   (SELECT min(r.event_date) FROM comparison_evidence r
                    WHERE r.id_number = e.id_number AND r.kind = 'release'
                      AND r.event_date >= e.event_date)
               END AS released_on
        FROM comparison_evidence e
        LEFT JOIN LATERAL (SELECT verdict, effective_date FROM evidence_verdict v
                           WHERE v.evidence_ref = e.id ORDER BY v.id LIMIT 1) v ON true
        WHERE e.kind IN ('death', 'imprisonment')
          AND (ids IS NULL OR e.id_number = ANY (ids))
    ) f
    GROUP BY f.id_number
$$;

-- The projection's rows derived from the ledger alone, for these persons (all when ids is
-- NULL): one row per person the roster or a counting fact names.
CREATE FUNCTION cycle_person_derived(ids text[]) RETURNS SETOF cycle_person
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    WITH roster_now AS (
        SELECT DISTINCT ON (id_number) *
        FROM roster_version
        WHERE ids IS NULL OR id_number = ANY (ids)
        ORDER BY id_number, version DESC
    ),
    certified AS (
        SELECT id_number, array_agg(day ORDER BY day) AS days
        FROM (
            SELECT c.id_number, c.local_date AS day
            FROM certification c
            WHERE c.valid AND c.id_number IS NOT NULL
              AND (ids IS NULL OR c.id_number = ANY (ids))
              AND (SELECT r.outcome FROM result r WHERE r.certification_id = c.certification_id
                   ORDER BY r.revision DESC LIMIT 1) = 'qualified'
            UNION ALL
            SELECT id_number, local_date FROM assisted_certification
            WHERE ids IS NULL OR id_number = ANY (ids)
        ) x
        GROUP BY id_number
    ),
    proof AS (
        SELECT id_number, array_agg(event_date ORDER BY event_date) AS days
        FROM comparison_evidence
        WHERE kind = 'proof_of_life' AND (ids IS NULL OR id_number = ANY (ids))
        GROUP BY id_number
    ),
    open_review AS (
        SELECT c.id_number, count(*)::integer AS open
        FROM review_item q JOIN certification c ON c.certification_id = q.certification_id
        WHERE c.id_number IS NOT NULL AND (ids IS NULL OR c.id_number = ANY (ids))
          AND NOT EXISTS (SELECT 1 FROM staff_decision s
                          WHERE s.certification_id = q.certification_id)
        GROUP BY c.id_number
    ),
    findings AS (SELECT * FROM cycle_person_findings(ids)),
    who AS (
        SELECT id_number FROM roster_now UNION SELECT id_number FROM certified
        UNION SELECT id_number FROM proof UNION SELECT id_number FROM open_review
        UNION SELECT id_number FROM findings
    )
    SELECT r.first_paid_on, COALESCE(o.open, 0), COALESCE(f.evidence_review, false),
           r.status, r.insured_region, c.days, p.days, f.lost, w.id_number, r.name,
           r.benefit_type, r.version
    FROM who w
    LEFT JOIN roster_now r ON r.id_number = w.id_number
    LEFT JOIN certified c ON c.id_number = w.id_number
    LEFT JOIN proof p ON p.id_number = w.id_number
    LEFT JOIN open_review o ON o.id_number = w.id_number
    LEFT JOIN findings f ON f.id_number = w.id_number
$$;

-- Whether a projection row says anything (rows left empty by later facts, a result revised
-- away say, are kept and read as nothing).
CREATE FUNCTION cycle_person_empty(p cycle_person) RETURNS boolean
LANGUAGE sql IMMUTABLE
RETURN p.roster_version IS NULL AND p.cert_days IS NULL AND p.proof_days IS NULL
   AND p.open_reviews = 0 AND NOT p.evidence_review AND p.lost IS NULL;

-- Rebuilds the whole projection from the ledger (repair; the migration's backfill).
CREATE FUNCTION cycle_person_rebuild() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    n bigint;
BEGIN
    LOCK TABLE cycle_person IN EXCLUSIVE MODE;
    DELETE FROM cycle_person;
    INSERT INTO cycle_person SELECT * FROM cycle_person_derived(NULL);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

------------------------------------------------------------------------------------------
-- Keeping it current
------------------------------------------------------------------------------------------

-- Rows for these persons exist and are locked by this transaction, in ID number order.
CREATE FUNCTION cycle_person_lock(ids text[]) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO cycle_person (id_number)
    SELECT DISTINCT k FROM unnest(ids) AS k WHERE k IS NOT NULL ORDER BY k
    ON CONFLICT (id_number) DO NOTHING;
    PERFORM 1 FROM cycle_person WHERE id_number = ANY (ids) ORDER BY id_number FOR UPDATE;
END $$;

-- The findings of these persons, recomputed once their rows are locked: a writer of the
-- same person that committed meanwhile is seen by this fresh statement, one still running
-- waits for the lock and recomputes after this one.
CREATE FUNCTION cycle_person_refresh_findings(ids text[]) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM cycle_person_lock(ids);
    UPDATE cycle_person p
    SET evidence_review = COALESCE(f.evidence_review, false), lost = f.lost
    FROM unnest(ids) AS k(id_number)
    LEFT JOIN cycle_person_findings(ids) f ON f.id_number = k.id_number
    WHERE p.id_number = k.id_number
      AND (p.evidence_review IS DISTINCT FROM COALESCE(f.evidence_review, false)
           OR p.lost IS DISTINCT FROM f.lost);
END $$;

CREATE FUNCTION cycle_on_roster_version() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO cycle_person AS p (id_number, roster_version, name, benefit_type,
                                   roster_status, first_paid_on, insured_region)
    SELECT id_number, version, name, benefit_type, status, first_paid_on, insured_region
    FROM (SELECT DISTINCT ON (id_number) * FROM new_rows ORDER BY id_number, version DESC) n
    ORDER BY id_number
    ON CONFLICT (id_number) DO UPDATE
    SET roster_version = EXCLUDED.roster_version, name = EXCLUDED.name,
        benefit_type = EXCLUDED.benefit_type, roster_status = EXCLUDED.roster_status,
        first_paid_on = EXCLUDED.first_paid_on, insured_region = EXCLUDED.insured_region
    -- Versions of one person committed out of order: the highest stands, as in the roster view.
    WHERE p.roster_version IS NULL OR p.roster_version < EXCLUDED.roster_version;
    RETURN NULL;
END $$;

-- A certification counts while its latest result is qualified. Per certification the
-- statement's results change that from what the results before them said (nothing, for a
-- first result: the worker's case) to what the highest of them says.
CREATE FUNCTION cycle_on_result() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    persons text[];
    dates date[];
    before boolean[];
    after boolean[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE revision > 1) THEN
        INSERT INTO cycle_person AS p (id_number, cert_days)
        SELECT c.id_number, array_agg(c.local_date ORDER BY c.local_date)
        FROM new_rows n JOIN certification c ON c.certification_id = n.certification_id
        WHERE n.outcome = 'qualified' AND c.valid AND c.id_number IS NOT NULL
        GROUP BY c.id_number
        ORDER BY c.id_number
        ON CONFLICT (id_number) DO UPDATE
        SET cert_days = cycle_days_merge(p.cert_days, EXCLUDED.cert_days);
        RETURN NULL;
    END IF;
    -- Revisions (staff decisions, few): what counted before may stop counting.
    SELECT array_agg(c.id_number), array_agg(c.local_date), array_agg(n.lo > 1 AND COALESCE(
               (SELECT r.outcome = 'qualified' FROM result r
                WHERE r.certification_id = n.certification_id AND r.revision < n.lo
                ORDER BY r.revision DESC LIMIT 1), false)),
           array_agg(n.now)
    INTO persons, dates, before, after
    FROM (SELECT certification_id, min(revision) AS lo,
                 (array_agg(outcome ORDER BY revision DESC))[1] = 'qualified' AS now
          FROM new_rows GROUP BY certification_id) n
    JOIN certification c ON c.certification_id = n.certification_id
    WHERE c.valid AND c.id_number IS NOT NULL;
    INSERT INTO cycle_person AS p (id_number, cert_days)
    SELECT x.id_number, array_agg(x.day ORDER BY x.day)
    FROM unnest(persons, dates, before, after) AS x(id_number, day, was, now)
    WHERE x.now AND NOT x.was
    GROUP BY x.id_number ORDER BY x.id_number
    ON CONFLICT (id_number) DO UPDATE
    SET cert_days = cycle_days_merge(p.cert_days, EXCLUDED.cert_days);
    UPDATE cycle_person p SET cert_days = cycle_days_remove(p.cert_days, x.days)
    FROM (SELECT u.id_number, array_agg(u.day) AS days
          FROM unnest(persons, dates, before, after) AS u(id_number, day, was, now)
          WHERE u.was AND NOT u.now GROUP BY u.id_number) x
    WHERE p.id_number = x.id_number;
    RETURN NULL;
END $$;

CREATE FUNCTION cycle_on_assisted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO cycle_person AS p (id_number, cert_days)
    SELECT id_number, array_agg(local_date ORDER BY local_date)
    FROM new_rows GROUP BY id_number ORDER BY id_number
    ON CONFLICT (id_number) DO UPDATE
    SET cert_days = cycle_days_merge(p.cert_days, EXCLUDED.cert_days);
    RETURN NULL;
END $$;

-- Proof of life is merged in; death, imprisonment and release change the findings.
CREATE FUNCTION cycle_on_evidence() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    adverse text[];
BEGIN
    INSERT INTO cycle_person AS p (id_number, proof_days)
    SELECT id_number, array_agg(event_date ORDER BY event_date)
    FROM new_rows WHERE kind = 'proof_of_life'
    GROUP BY id_number ORDER BY id_number
    ON CONFLICT (id_number) DO UPDATE
    SET proof_days = cycle_days_merge(p.proof_days, EXCLUDED.proof_days);
    SELECT array_agg(DISTINCT id_number) INTO adverse
    FROM new_rows WHERE kind IN ('death', 'imprisonment', 'release');
    IF adverse IS NOT NULL THEN
        PERFORM cycle_person_refresh_findings(adverse);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION cycle_on_verdict() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    named text[];
BEGIN
    SELECT array_agg(DISTINCT e.id_number) INTO named
    FROM new_rows n JOIN comparison_evidence e ON e.id = n.evidence_ref;
    IF named IS NOT NULL THEN
        PERFORM cycle_person_refresh_findings(named);
    END IF;
    RETURN NULL;
END $$;

-- A review item is open until the certification's first staff decision. (Decisions on one
-- certification are serialised by the deciding code's lock, so "first" is well defined.)
CREATE FUNCTION cycle_on_review_item() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO cycle_person AS p (id_number, open_reviews)
    SELECT c.id_number, count(*)
    FROM new_rows n JOIN certification c ON c.certification_id = n.certification_id
    WHERE c.id_number IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM staff_decision s
                      WHERE s.certification_id = n.certification_id)
    GROUP BY c.id_number ORDER BY c.id_number
    ON CONFLICT (id_number) DO UPDATE
    SET open_reviews = p.open_reviews + EXCLUDED.open_reviews;
    RETURN NULL;
END $$;

CREATE FUNCTION cycle_on_staff_decision() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE cycle_person p SET open_reviews = p.open_reviews - x.closed
    FROM (SELECT c.id_number, count(*) AS closed
          FROM (SELECT DISTINCT certification_id FROM new_rows) n
          JOIN certification c ON c.certification_id = n.certification_id
          WHERE c.id_number IS NOT NULL
            AND EXISTS (SELECT 1 FROM review_item q
                        WHERE q.certification_id = n.certification_id)
            AND NOT EXISTS (SELECT 1 FROM staff_decision s
                            WHERE s.certification_id = n.certification_id
                              AND s.id NOT IN (SELECT id FROM new_rows))
          GROUP BY c.id_number) x
    WHERE p.id_number = x.id_number;
    RETURN NULL;
END $$;

-- Statement triggers with the statement's rows as a transition table; fired whatever
-- session_replication_role says, as the ledger's own triggers are.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('roster_version', 'cycle_on_roster_version'),
        ('result', 'cycle_on_result'),
        ('assisted_certification', 'cycle_on_assisted'),
        ('comparison_evidence', 'cycle_on_evidence'),
        ('evidence_verdict', 'cycle_on_verdict'),
        ('review_item', 'cycle_on_review_item'),
        ('staff_decision', 'cycle_on_staff_decision')) AS x(tbl, fn)
    LOOP
        EXECUTE format('CREATE TRIGGER cycle_person AFTER INSERT ON %I'
                       ' REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT'
                       ' EXECUTE FUNCTION %I()', t.tbl, t.fn);
        EXECUTE format('ALTER TABLE %I ENABLE ALWAYS TRIGGER cycle_person', t.tbl);
    END LOOP;
END $$;

-- The facts recorded before this migration.
SELECT cycle_person_rebuild();
