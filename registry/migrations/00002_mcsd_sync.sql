-- +goose Up
-- Incremental sync with iHRIS as an IHE mCSD update consumer (ITI-91): where each source
-- was last read up to, and a record of every sync.

-- The cursor per FHIR server: the next sync asks for changes since it. It is the server's
-- own time when the last successful sync started reading (minus a small overlap), never
-- this machine's clock.
CREATE TABLE mcsd_sync_state (
    source     text PRIMARY KEY,               -- the FHIR base URL
    cursor     timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mcsd_syncs (
    id          bigserial PRIMARY KEY,
    source      text NOT NULL,
    mode        text NOT NULL CHECK (mode IN ('full', 'history', 'lastUpdated')),
    trigger     text NOT NULL CHECK (trigger IN ('schedule', 'api')),
    actor       text NOT NULL DEFAULT '',
    status      text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'partial', 'failed')),
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    since       timestamptz,                   -- the cursor asked from; NULL for a full load
    next_since  timestamptz,                   -- the cursor saved for the next sync, when this one succeeded
    pages       int NOT NULL DEFAULT 0,
    counts      jsonb NOT NULL DEFAULT '{}',   -- per resource type: changed, deleted
    created     int NOT NULL DEFAULT 0,
    updated     int NOT NULL DEFAULT 0,
    deactivated int NOT NULL DEFAULT 0,
    rows_failed int NOT NULL DEFAULT 0,
    errors      jsonb NOT NULL DEFAULT '[]',   -- bad resources, each named Type/id
    warnings    jsonb NOT NULL DEFAULT '[]',   -- changes mhero cannot apply (a deleted Location ...)
    error       text NOT NULL DEFAULT ''
);
CREATE INDEX mcsd_syncs_source_idx ON mcsd_syncs (source, started_at);

-- +goose Down
DROP TABLE mcsd_syncs;
DROP TABLE mcsd_sync_state;
