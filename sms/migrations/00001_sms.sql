-- +goose Up
-- Two-way SMS: what the inbound pipeline did with each MO SMS, surveys (questions,
-- participants, answers) and recurring reminders. Applied after the registry's and the
-- outbox's migrations (it extends inbound_messages and points at workers).

-- What the processor did with each inbound SMS. handled_at stays NULL until it is done;
-- a message whose handling failed for a passing reason waits for retry_at.
ALTER TABLE inbound_messages
    ADD COLUMN worker_id        bigint,          -- the sender, when the registry knows the number
    ADD COLUMN handled_as       text,            -- stop, start, help, stock, survey_answer, ... (see sms.Handled*)
    ADD COLUMN reply_message_id bigint,          -- the reply queued in the outbox, NULL when none
    ADD COLUMN handle_note      text,            -- why: a refused stock report's field, a suppressed reply, an error
    ADD COLUMN attempts         int NOT NULL DEFAULT 0, -- handlings that failed for a passing reason
    ADD COLUMN retry_at         timestamptz;     -- not claimed before
-- The claim takes a sender's oldest unhandled SMS only (messages of one person are handled
-- in the order they came): this finds "an older one is unhandled" without reading history.
CREATE INDEX inbound_unhandled_from_idx ON inbound_messages (from_msisdn, id) WHERE handled_at IS NULL;

-- A survey: a few questions sent to a target like a broadcast, answered by SMS (or USSD)
-- until its deadline. The definition never changes once created.
CREATE TABLE surveys (
    id               bigserial PRIMARY KEY,
    name             text NOT NULL,
    intro            jsonb NOT NULL DEFAULT '{}',   -- per language: text before the first question
    closing          jsonb NOT NULL DEFAULT '{}',   -- per language: the thanks after the last answer
    languages        text[] NOT NULL,               -- the languages every text is written in; the first is the fallback
    target           jsonb NOT NULL,                -- the registry target as given
    priority         text NOT NULL DEFAULT 'normal',-- of the first question's broadcast and the reminders
    state            text NOT NULL DEFAULT 'sending' CHECK (state IN ('sending', 'open', 'closed')),
    send_at          timestamptz NOT NULL,
    deadline         timestamptz NOT NULL,
    reminder_seconds int,                           -- a reminder this long after a question went unanswered; NULL = none
    spread_over      text NOT NULL DEFAULT '',      -- passed on to the broadcasts
    valid_for        text NOT NULL DEFAULT '',
    broadcast_ids    bigint[] NOT NULL DEFAULT '{}',-- the first question's broadcasts, one per language
    principal        jsonb NOT NULL DEFAULT '{}',   -- who created it and their scope: the background work acts as them
    scope_path       text,                          -- the creating key's scope ("1/4/17"); NULL = national
    created_by       text NOT NULL DEFAULT '',
    idempotency_key  text UNIQUE,
    request_hash     bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    closed_at        timestamptz,
    CHECK (deadline > send_at)
);
CREATE INDEX surveys_open_idx ON surveys (deadline) WHERE state <> 'closed';

CREATE TABLE survey_questions (
    survey_id  bigint NOT NULL REFERENCES surveys (id) ON DELETE CASCADE,
    no         smallint NOT NULL,                   -- 1..
    kind       text NOT NULL CHECK (kind IN ('choice', 'number', 'text')),
    text       jsonb NOT NULL,                      -- per language
    choices    jsonb NOT NULL DEFAULT '[]',         -- [{value, label: {lang: text}}] for a choice
    min_value  bigint,                              -- for a number
    max_value  bigint,
    max_length int,                                 -- for a text
    PRIMARY KEY (survey_id, no)
);

-- One row per worker the survey was sent to (frozen from its broadcasts' messages), with
-- where they are in it.
CREATE TABLE survey_participants (
    survey_id       bigint NOT NULL REFERENCES surveys (id) ON DELETE CASCADE,
    worker_id       bigint NOT NULL,
    language        text NOT NULL,                  -- the survey language they are asked in
    message_id      bigint,                         -- the first question's message
    top_location_id bigint,                         -- for answers per top-level location
    state           text NOT NULL DEFAULT 'sent' CHECK (state IN ('sent', 'started', 'completed', 'opted_out')),
    current_no      smallint NOT NULL DEFAULT 1,    -- the question they are asked now
    prompted_at     timestamptz NOT NULL,           -- when that question was (or is due to be) sent
    remind_at       timestamptz,                    -- when to remind them; NULL = never
    reminded_at     timestamptz,                    -- reminded once; never again
    invalid_count   int NOT NULL DEFAULT 0,         -- answers that did not validate (asked again)
    started_at      timestamptz,
    completed_at    timestamptz,
    PRIMARY KEY (survey_id, worker_id)
) WITH (fillfactor = 70);
-- The inbound pipeline's lookup: a worker's surveys. No index covers a column an answer
-- changes (state, current_no, the times), so an answer updates its row in place (HOT,
-- with room left on each page); the reminder scan reads an open survey's participants
-- through the primary key instead of an index on remind_at.
CREATE INDEX survey_participants_worker_idx ON survey_participants (worker_id);

CREATE TABLE survey_answers (
    id          bigserial PRIMARY KEY,
    survey_id   bigint NOT NULL REFERENCES surveys (id) ON DELETE CASCADE,
    worker_id   bigint NOT NULL,
    question_no smallint NOT NULL,
    value       text NOT NULL,                      -- the choice's value, the number, or the text
    late        boolean NOT NULL DEFAULT false,     -- came after the deadline: kept, not counted
    channel     text NOT NULL CHECK (channel IN ('sms', 'ussd')),
    inbound_id  bigint,                             -- the SMS it came in: an SMS handled again stores nothing twice
    source_key  text,                               -- the USSD hop's key, for the same reason
    answered_at timestamptz NOT NULL
);
-- Partial: each answer has one of the two, and an index entry per NULL would cost every insert.
CREATE UNIQUE INDEX survey_answers_inbound ON survey_answers (inbound_id) WHERE inbound_id IS NOT NULL;
CREATE UNIQUE INDEX survey_answers_source_key ON survey_answers (source_key) WHERE source_key IS NOT NULL;
CREATE UNIQUE INDEX survey_answers_once ON survey_answers (survey_id, worker_id, question_no) WHERE NOT late;
CREATE INDEX survey_answers_survey_idx ON survey_answers (survey_id, id);

-- Recurring sends: at each slot of spec (in time_zone) a broadcast is created with the
-- target resolved afresh.
CREATE TABLE schedules (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL DEFAULT '',
    spec            text NOT NULL,                  -- "0 8 * * MON" or "weekly MON 08:00"
    time_zone       text NOT NULL,
    text            text NOT NULL,
    target          jsonb NOT NULL,
    priority        text NOT NULL DEFAULT 'normal',
    valid_for       text NOT NULL DEFAULT '',
    spread_over     text NOT NULL DEFAULT '',
    -- A reporting reminder goes only to workers whose facility has no stock report in the
    -- period (day, week or month) containing the slot, or the one before with report_previous.
    report_period   text CHECK (report_period IN ('day', 'week', 'month')),
    report_previous boolean NOT NULL DEFAULT false,
    paused          boolean NOT NULL DEFAULT false,
    next_run_at     timestamptz NOT NULL,           -- the next slot to fire
    last_run_at     timestamptz,
    principal       jsonb NOT NULL DEFAULT '{}',
    scope_path      text,
    created_by      text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);
CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE NOT paused AND deleted_at IS NULL;

-- Each slot a schedule reached, once: the primary key is what "fires once" rests on,
-- with the broadcast's idempotency key "schedule:<id>:<slot>".
CREATE TABLE schedule_runs (
    schedule_id  bigint NOT NULL REFERENCES schedules (id),
    slot         timestamptz NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('sent', 'nobody', 'missed', 'failed')),
    broadcast_id bigint,
    recipients   int NOT NULL DEFAULT 0,
    note         text NOT NULL DEFAULT '',
    fired_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, slot)
);

-- +goose Down
DROP TABLE schedule_runs;
DROP TABLE schedules;
DROP TABLE survey_answers;
DROP TABLE survey_participants;
DROP TABLE survey_questions;
DROP TABLE surveys;
DROP INDEX inbound_unhandled_from_idx;
ALTER TABLE inbound_messages DROP COLUMN worker_id, DROP COLUMN handled_as, DROP COLUMN reply_message_id,
    DROP COLUMN handle_note, DROP COLUMN attempts, DROP COLUMN retry_at;
