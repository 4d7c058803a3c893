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

-- The skills of a worker as a bit set (bit n for skill id n, ids 1..63): "has any of these
-- skills" becomes one AND, and the targeting summary below can be keyed by it.
-- +goose StatementBegin
CREATE FUNCTION skill_mask(ids int[]) RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT COALESCE(bit_or(1::bigint << s), 0) FROM unnest(ids) AS s WHERE s BETWEEN 1 AND 63
$$;
-- +goose StatementEnd

CREATE TABLE workers (
    id            bigserial PRIMARY KEY,
    ihris_id      text UNIQUE,                      -- NULL when the worker did not come from iHRIS
    name          text NOT NULL,
    msisdn        text NOT NULL UNIQUE,             -- E.164 digits without '+'
    alt_msisdn    text,
    -- No FOREIGN KEY on cadre_id and facility_id, on purpose: PostgreSQL checks a foreign
    -- key row by row, which was 40% of a 200,000-worker import. The store keeps the same
    -- guarantee set-based: every writer takes FOR KEY SHARE on the facilities it points
    -- at (what the foreign-key check does per row), DeleteFacility takes FOR UPDATE and
    -- refuses while workers remain, and cadres are never deleted.
    cadre_id      int,
    facility_id   bigint,
    -- Denormalised from the facility's location so that targeting by subtree and counting
    -- by top-level location is one index scan, not a join per worker. Kept in step by the
    -- store whenever a facility or location moves.
    location_path bigint[] NOT NULL DEFAULT '{}',
    -- The top-level location (the country's child, e.g. the county) that previews count
    -- by. Generated, so every write path keeps it right; an int column groups several
    -- times faster than subscripting the array on every row.
    top_location_id bigint GENERATED ALWAYS AS (COALESCE(location_path[2], location_path[1])) STORED,
    -- The facility's own location (the path's last element): targeting a subtree below the
    -- top level expands it to its locations (a small set) and finds their workers through
    -- workers_place_idx without touching the table.
    location_id     bigint GENERATED ALWAYS AS (location_path[cardinality(location_path)]) STORED,
    skill_ids     int[] NOT NULL DEFAULT '{}',
    -- skill_mask(skill_ids), written with skill_ids by the store (in Go for single writes,
    -- once per distinct skill list for imports): a generated column cost an import 12%.
    skill_mask    bigint NOT NULL DEFAULT 0,
    language      text NOT NULL DEFAULT 'en',
    active        boolean NOT NULL DEFAULT true,
    opted_out     boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workers_alt_msisdn_idx ON workers (alt_msisdn) WHERE alt_msisdn IS NOT NULL;
-- Targeting below the top level: an index-only scan by location answers the filters and the
-- counts by cadre and county. Country- and county-wide counts come from worker_counts.
-- It also finds a facility's workers (by the facility's location and id), so there is no
-- separate index on facility_id to maintain on every import.
CREATE INDEX workers_place_idx ON workers (location_id, facility_id)
    INCLUDE (active, opted_out, cadre_id, top_location_id, language, skill_mask);

-- Reachable workers counted by top-level location, cadre, language and skill set. A
-- preview of a target that names no place below the top level and no facility (the
-- country-wide and county-wide audiences, by cadre, language and skills) sums a few
-- hundred rows here instead of scanning every worker. Statement-level triggers keep it
-- exact with one set-based upsert per statement, so a 200,000-row import pays once.
CREATE TABLE worker_counts (
    top_location_id bigint NOT NULL,   -- 0 for workers without a facility
    cadre_id        int NOT NULL,      -- 0 for workers without a cadre
    language        text NOT NULL,
    skill_mask      bigint NOT NULL,
    n               int NOT NULL,
    PRIMARY KEY (top_location_id, cadre_id, language, skill_mask)
);

-- +goose StatementBegin
CREATE FUNCTION worker_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO worker_counts AS c (top_location_id, cadre_id, language, skill_mask, n)
    SELECT COALESCE(top_location_id, 0), COALESCE(cadre_id, 0), language, skill_mask, count(*)
    FROM new_rows WHERE active AND NOT opted_out GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (top_location_id, cadre_id, language, skill_mask) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION worker_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO worker_counts AS c (top_location_id, cadre_id, language, skill_mask, n)
    SELECT COALESCE(top_location_id, 0), COALESCE(cadre_id, 0), language, skill_mask, -count(*)
    FROM old_rows WHERE active AND NOT opted_out GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (top_location_id, cadre_id, language, skill_mask) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION worker_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO worker_counts AS c (top_location_id, cadre_id, language, skill_mask, n)
    SELECT k1, k2, k3, k4, sum(d) FROM (
        SELECT COALESCE(top_location_id, 0) AS k1, COALESCE(cadre_id, 0) AS k2, language AS k3, skill_mask AS k4, 1 AS d
        FROM new_rows WHERE active AND NOT opted_out
        UNION ALL
        SELECT COALESCE(top_location_id, 0), COALESCE(cadre_id, 0), language, skill_mask, -1
        FROM old_rows WHERE active AND NOT opted_out) x
    GROUP BY 1, 2, 3, 4 HAVING sum(d) <> 0 ORDER BY 1, 2, 3, 4
    ON CONFLICT (top_location_id, cadre_id, language, skill_mask) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;
-- +goose StatementEnd

CREATE TRIGGER workers_count_insert AFTER INSERT ON workers
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION worker_counts_insert();
CREATE TRIGGER workers_count_update AFTER UPDATE ON workers
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION worker_counts_update();
CREATE TRIGGER workers_count_delete AFTER DELETE ON workers
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION worker_counts_delete();

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
DROP TABLE worker_counts;
DROP TABLE imports;
DROP TABLE audit_log;
DROP TABLE api_keys;
DROP TABLE workers;
DROP FUNCTION worker_counts_insert, worker_counts_update, worker_counts_delete;
DROP FUNCTION skill_mask;
DROP TABLE skills;
DROP TABLE cadres;
DROP TABLE facilities;
DROP TABLE locations;
