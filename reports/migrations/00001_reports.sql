-- +goose Up
-- Reports: what health workers submit from their phones (stock levels, referrals, the
-- "my details" check) and what the ministry's views read. Applied after the registry's
-- migrations: every row points at a registry worker and facility. Rows are history: a
-- new report is a new row, never an update of an old one (referrals change state, and
-- every change is kept in referral_events).

-- The commodities workers may report on, copied from the configuration at start
-- (Store.SyncCommodities). A commodity dropped from the configuration is deactivated, not
-- deleted, so its history keeps its name.
CREATE TABLE commodities (
    id      smallserial PRIMARY KEY,
    code    text NOT NULL UNIQUE,
    name    text NOT NULL,
    active  boolean NOT NULL DEFAULT true
);

CREATE TABLE stock_reports (
    id              bigserial PRIMARY KEY,        -- also the reference number, see ref.go
    facility_id     bigint NOT NULL REFERENCES facilities (id),
    commodity_id    smallint NOT NULL REFERENCES commodities (id),
    quantity        int NOT NULL CHECK (quantity >= 0),          -- on hand when counted
    stockout_days   int NOT NULL DEFAULT 0 CHECK (stockout_days BETWEEN 0 AND 366), -- out of stock since the last report
    worker_id       bigint NOT NULL REFERENCES workers (id),     -- reported by
    reported_at     timestamptz NOT NULL,                        -- when the worker counted (the phone session)
    received_at     timestamptz NOT NULL DEFAULT now(),
    idempotency_key text                                         -- USSD session id + hop; NULL from bulk loads
);
CREATE UNIQUE INDEX stock_reports_idempotency_key ON stock_reports (idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Everything a location-and-period view asks of one facility (reporting rates, stock-outs,
-- the export of a place and period): one range per facility, answered from the index
-- alone once the table is vacuumed (autovacuum does insert-only tables since PG 13).
CREATE INDEX stock_reports_facility_time_idx ON stock_reports (facility_id, reported_at)
    INCLUDE (commodity_id, quantity, stockout_days);
-- Trends of one commodity: one range per facility and commodity, a tenth of the above
-- (id breaks ties between counts of the same instant; without it every row was a heap
-- visit, and a county's year took 3,700 of them).
CREATE INDEX stock_reports_commodity_idx ON stock_reports (facility_id, commodity_id, reported_at)
    INCLUDE (quantity, stockout_days, id);

-- The latest report of each facility and commodity, kept by the trigger below so that the
-- latest-stock view reads a few thousand rows instead of picking them out of millions.
-- "Latest" is by reported_at (then id): a report that arrives late, counted before the
-- one already here, is history but does not replace it.
CREATE TABLE stock_latest (
    facility_id   bigint NOT NULL,
    commodity_id  smallint NOT NULL,
    report_id     bigint NOT NULL,
    quantity      int NOT NULL,
    stockout_days int NOT NULL,
    worker_id     bigint NOT NULL,
    reported_at   timestamptz NOT NULL,
    PRIMARY KEY (facility_id, commodity_id)
);

-- One statement-level upsert per INSERT or COPY: a bulk load of a million reports pays
-- once, not a million times.
-- +goose StatementBegin
CREATE FUNCTION stock_latest_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stock_latest AS l (facility_id, commodity_id, report_id, quantity, stockout_days, worker_id, reported_at)
    SELECT DISTINCT ON (facility_id, commodity_id) facility_id, commodity_id, id, quantity, stockout_days, worker_id, reported_at
    FROM new_rows ORDER BY facility_id, commodity_id, reported_at DESC, id DESC
    ON CONFLICT (facility_id, commodity_id) DO UPDATE
        SET report_id = EXCLUDED.report_id, quantity = EXCLUDED.quantity, stockout_days = EXCLUDED.stockout_days,
            worker_id = EXCLUDED.worker_id, reported_at = EXCLUDED.reported_at
        WHERE (EXCLUDED.reported_at, EXCLUDED.report_id) > (l.reported_at, l.report_id);
    RETURN NULL;
END $$;
-- +goose StatementEnd

CREATE TRIGGER stock_reports_latest AFTER INSERT ON stock_reports
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION stock_latest_insert();

-- A patient referred by a worker from one facility to another. state is the current state;
-- referral_events keeps every change. No patient identity and no clinical free text are
-- stored: reason is a code from the menu, age band and sex are coarse enough to count by.
CREATE TABLE referrals (
    id               bigserial PRIMARY KEY,       -- also the reference number
    worker_id        bigint NOT NULL REFERENCES workers (id),       -- referred by
    from_facility_id bigint NOT NULL REFERENCES facilities (id),
    to_facility_id   bigint NOT NULL REFERENCES facilities (id),
    reason           text NOT NULL,
    urgency          text NOT NULL CHECK (urgency IN ('routine', 'urgent', 'emergency')),
    age_band         text NOT NULL DEFAULT '',    -- the menu's bands: 0-11m, 1-4, 5-14, 15-49, 50+
    sex              text NOT NULL DEFAULT '' CHECK (sex IN ('', 'F', 'M')),
    state            text NOT NULL DEFAULT 'sent' CHECK (state IN ('sent', 'received', 'completed')),
    sent_at          timestamptz NOT NULL,
    received_at      timestamptz,
    completed_at     timestamptz,
    idempotency_key  text
);
CREATE UNIQUE INDEX referrals_idempotency_key ON referrals (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX referrals_from_idx ON referrals (from_facility_id, sent_at);
CREATE INDEX referrals_to_idx ON referrals (to_facility_id, sent_at);
-- Overdue referrals are the ones still 'sent': a small and shrinking set.
CREATE INDEX referrals_open_idx ON referrals (sent_at) WHERE state = 'sent';

CREATE TABLE referral_events (
    id          bigserial PRIMARY KEY,
    referral_id bigint NOT NULL REFERENCES referrals (id),
    state       text NOT NULL CHECK (state IN ('sent', 'received', 'completed')),
    worker_id   bigint REFERENCES workers (id),  -- who changed it; NULL for the ministry's own tools
    at          timestamptz NOT NULL
);
CREATE INDEX referral_events_referral_idx ON referral_events (referral_id, id);

-- A worker's answer to the "my details" check: the facility and cadre the registry has
-- for them, and what the worker said. confirmed: they agree. corrected: the worker named
-- another known facility or cadre. pending_review: the worker's answer matches nothing
-- known (a name typed instead of a code), so a person has to read it.
CREATE TABLE worker_validations (
    id                   bigserial PRIMARY KEY,  -- also the reference number
    worker_id            bigint NOT NULL REFERENCES workers (id),
    state                text NOT NULL CHECK (state IN ('confirmed', 'corrected', 'pending_review')),
    registry_facility_id bigint,                 -- what the registry had when the worker answered
    registry_cadre       text NOT NULL DEFAULT '',
    stated_facility_id   bigint REFERENCES facilities (id), -- the facility the worker named, when known
    stated_facility      text NOT NULL DEFAULT '',          -- as the worker typed it ('' = confirmed the registry's)
    stated_cadre         text NOT NULL DEFAULT '',          -- as the worker typed it ('' = confirmed the registry's)
    validated_at         timestamptz NOT NULL,
    idempotency_key      text
);
CREATE UNIQUE INDEX worker_validations_idempotency_key ON worker_validations (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX worker_validations_worker_idx ON worker_validations (worker_id, validated_at);
CREATE INDEX worker_validations_time_idx ON worker_validations (validated_at);

-- +goose Down
DROP TABLE worker_validations;
DROP TABLE referral_events;
DROP TABLE referrals;
DROP TABLE stock_latest;
DROP TABLE stock_reports;
DROP FUNCTION stock_latest_insert;
DROP TABLE commodities;
