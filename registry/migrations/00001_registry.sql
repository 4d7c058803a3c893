-- +goose Up
-- The registry: what iHRIS holds and mhero targets by (cadre, location, skills).

CREATE TABLE locations (
    id          bigserial PRIMARY KEY,
    code        text NOT NULL UNIQUE,              -- iHRIS/FHIR Location id or CSV code
    name        text NOT NULL,
    parent_id   bigint REFERENCES locations (id),
    level       int NOT NULL DEFAULT 0,            -- 0 for a root (the country)
    path        bigint[] NOT NULL,                 -- ids from the root down to this one, inclusive
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (parent_id IS NULL OR parent_id <> id)
);
CREATE INDEX locations_parent_idx ON locations (parent_id);
CREATE INDEX locations_path_idx ON locations USING gin (path);

CREATE TABLE facilities (
    id          bigserial PRIMARY KEY,
    code        text NOT NULL UNIQUE,
    name        text NOT NULL,
    location_id bigint NOT NULL REFERENCES locations (id),
    dhis2_uid   text,
    dhis2_code  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX facilities_location_idx ON facilities (location_id);

CREATE TABLE cadres (
    id    serial PRIMARY KEY,
    code  text NOT NULL UNIQUE,
    name  text NOT NULL
);

CREATE TABLE skills (
    id    serial PRIMARY KEY,
    code  text NOT NULL UNIQUE,
    name  text NOT NULL
);

CREATE TABLE workers (
    id            bigserial PRIMARY KEY,
    ihris_id      text UNIQUE,                      -- NULL when the worker did not come from iHRIS
    name          text NOT NULL,
    msisdn        text NOT NULL UNIQUE,             -- E.164 digits without '+'
    alt_msisdn    text,
    cadre_id      int REFERENCES cadres (id),
    facility_id   bigint REFERENCES facilities (id),
    -- Denormalised from the facility's location so that targeting by subtree and counting
    -- by top-level location is one index scan, not a join per worker. Kept in step by the
    -- store whenever a facility or location moves.
    location_path bigint[] NOT NULL DEFAULT '{}',
    -- The top-level location (the country's child, e.g. the county) that previews count
    -- by. Generated, so every write path keeps it right; an int column groups several
    -- times faster than subscripting the array on every row.
    top_location_id bigint GENERATED ALWAYS AS (COALESCE(location_path[2], location_path[1])) STORED,
    skill_ids     int[] NOT NULL DEFAULT '{}',
    language      text NOT NULL DEFAULT 'en',
    active        boolean NOT NULL DEFAULT true,
    opted_out     boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workers_location_path_idx ON workers USING gin (location_path);
CREATE INDEX workers_skill_ids_idx ON workers USING gin (skill_ids);
CREATE INDEX workers_facility_idx ON workers (facility_id);
-- Targeting's workhorse: the reachable workers by cadre and top-level location, covering
-- the columns the common filters read, so country- and county-wide previews are
-- index-only scans.
CREATE INDEX workers_reachable_idx ON workers (cadre_id, top_location_id) INCLUDE (language, facility_id)
    WHERE active AND NOT opted_out;
CREATE INDEX workers_alt_msisdn_idx ON workers (alt_msisdn) WHERE alt_msisdn IS NOT NULL;

-- API keys: only a SHA-256 of the key is kept; the key itself is shown once at creation.
CREATE TABLE api_keys (
    id                bigserial PRIMARY KEY,
    name              text NOT NULL,
    role              text NOT NULL CHECK (role IN ('admin', 'sender', 'reader')),
    scope_location_id bigint REFERENCES locations (id),
    key_hash          bytea NOT NULL UNIQUE,
    key_prefix        text NOT NULL,               -- first characters, to recognise a key in lists
    created_at        timestamptz NOT NULL DEFAULT now(),
    revoked_at        timestamptz,
    last_used_at      timestamptz
);

-- Every change made through the API or CLI: who, what, when.
CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    key_id     bigint REFERENCES api_keys (id),
    actor      text NOT NULL,                      -- key name, or "cli"
    action     text NOT NULL,                      -- create, update, delete, import
    entity     text NOT NULL,                      -- worker, facility, location, import, api_key
    entity_id  text NOT NULL DEFAULT '',
    detail     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at_idx ON audit_log (at);

-- One row per import run, with every bad row reported.
CREATE TABLE imports (
    id           bigserial PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    source       text NOT NULL,                    -- file name or "api"
    format       text NOT NULL,                    -- csv-workers, csv-facilities, csv-locations, fhir-bundle
    partial      boolean NOT NULL DEFAULT false,
    status       text NOT NULL DEFAULT 'running',  -- running, succeeded, failed, partial
    rows_total   int NOT NULL DEFAULT 0,
    rows_ok      int NOT NULL DEFAULT 0,
    rows_failed  int NOT NULL DEFAULT 0,
    created      int NOT NULL DEFAULT 0,
    updated      int NOT NULL DEFAULT 0,
    ignored      int NOT NULL DEFAULT 0,           -- FHIR resources of other types
    errors       jsonb NOT NULL DEFAULT '[]',
    actor        text NOT NULL DEFAULT ''
);

-- +goose Down
DROP TABLE imports;
DROP TABLE audit_log;
DROP TABLE api_keys;
DROP TABLE workers;
DROP TABLE skills;
DROP TABLE cadres;
DROP TABLE facilities;
DROP TABLE locations;
