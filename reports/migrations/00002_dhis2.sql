-- +goose Up
-- Pushes of aggregated stock to DHIS2 (POST /api/dataValueSets) and what DHIS2 answered.
-- Every push is recorded, whether it succeeded, was refused or never reached DHIS2, so a
-- value DHIS2 ignored is visible here and never silently lost.

CREATE TABLE dhis2_pushes (
    id             bigserial PRIMARY KEY,
    period         text NOT NULL,                   -- the DHIS2 period pushed: 202611, 2026W48
    data_set       text NOT NULL,
    trigger        text NOT NULL CHECK (trigger IN ('schedule', 'api')),
    actor          text NOT NULL DEFAULT '',        -- the API key's name, or "schedule"
    status         text NOT NULL DEFAULT 'running'
                   CHECK (status IN ('running', 'succeeded', 'warning', 'failed', 'skipped')),
    started_at     timestamptz NOT NULL,
    finished_at    timestamptz,
    values_sent    int NOT NULL DEFAULT 0,          -- data values in the payload
    skipped        int NOT NULL DEFAULT 0,          -- facility-commodity pairs left out, unmapped (see warnings)
    dry_run        jsonb,                           -- the dry run's summary, NULL when none was made
    dhis2_status   text NOT NULL DEFAULT '',        -- SUCCESS, WARNING or ERROR, as DHIS2 said
    imported       int NOT NULL DEFAULT 0,
    updated        int NOT NULL DEFAULT 0,
    ignored        int NOT NULL DEFAULT 0,
    deleted        int NOT NULL DEFAULT 0,
    conflicts      int NOT NULL DEFAULT 0,          -- all of them; the first 1,000 are kept below
    warnings       jsonb NOT NULL DEFAULT '[]',     -- facilities without an org unit, commodities without a data element
    error          text NOT NULL DEFAULT ''         -- why it failed (never a secret)
);
-- The scheduler's question: when did the last scheduled push start, and how did it end.
CREATE INDEX dhis2_pushes_trigger_idx ON dhis2_pushes (trigger, started_at);

-- DHIS2's conflicts, one row each, in the order DHIS2 listed them. indexes are positions
-- in the payload's dataValues (DHIS2 2.36+); data_values are the values mhero sent there,
-- named by facility and commodity, so a person can see what was refused.
CREATE TABLE dhis2_push_conflicts (
    push_id     bigint NOT NULL REFERENCES dhis2_pushes (id) ON DELETE CASCADE,
    n           int NOT NULL,
    phase       text NOT NULL CHECK (phase IN ('dry_run', 'import')),
    object      text NOT NULL DEFAULT '',
    value       text NOT NULL DEFAULT '',            -- DHIS2's message
    error_code  text NOT NULL DEFAULT '',            -- E7617 ...
    property    text NOT NULL DEFAULT '',
    indexes     int[] NOT NULL DEFAULT '{}',
    data_values jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (push_id, n)
);

-- +goose Down
DROP TABLE dhis2_push_conflicts;
DROP TABLE dhis2_pushes;
