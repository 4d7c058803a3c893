-- +goose Up
-- The outbox: every SMS mhero sends (messages, one row each, and their SMSC parts), every
-- delivery receipt as it came (receipts), and every SMS it receives (inbound_messages).
-- Applied after the registry's migrations (messages.worker_id refers to workers).

CREATE TABLE messages (
    id              bigserial PRIMARY KEY,
    worker_id       bigint REFERENCES workers (id) ON DELETE SET NULL, -- NULL for a number outside the registry
    msisdn          text NOT NULL,                    -- E.164 digits without '+'
    sender          text NOT NULL DEFAULT '',         -- '' = the MNO's configured short code
    body            text NOT NULL,
    priority        smallint NOT NULL DEFAULT 5 CHECK (priority BETWEEN 0 AND 9), -- 0 alert ... 9 bulk; lower goes first
    mno             text,                             -- routed to (set at enqueue when known, always at submit)
    state           text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'submitted', 'delivered',
                        'undeliverable', 'expired', 'rejected', 'failed', 'unknown', 'cancelled')),
    segments        int NOT NULL DEFAULT 0,           -- billed segments, known once submitted
    error_code      text,                             -- submit command_status ("0x0B") or the failing receipt's err
    attempts        int NOT NULL DEFAULT 0,           -- submit attempts whose outcome was recorded
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    valid_until     timestamptz,                      -- not sent after this; NULL = no limit
    created_at      timestamptz NOT NULL DEFAULT now(),
    submitted_at    timestamptz,
    final_at        timestamptz,                      -- when it first reached a final state
    broadcast_id    bigint,                           -- the broadcast it belongs to (FK added with broadcasts)
    idempotency_key text UNIQUE
);
-- Dispatchers claim due queued messages, most urgent first:
--   SELECT ... WHERE state = 'queued' AND next_attempt_at <= now()
--   ORDER BY priority, next_attempt_at, id LIMIT n FOR UPDATE SKIP LOCKED
CREATE INDEX messages_queue_idx ON messages (priority, next_attempt_at, id) WHERE state = 'queued';
-- The expiry sweep: queued messages past their validity, submitted ones never settled.
CREATE INDEX messages_valid_until_idx ON messages (valid_until) WHERE state IN ('queued', 'submitted', 'unknown');
CREATE INDEX messages_broadcast_idx ON messages (broadcast_id, state) WHERE broadcast_id IS NOT NULL;
CREATE INDEX messages_worker_idx ON messages (worker_id, created_at) WHERE worker_id IS NOT NULL;

-- One row per submit_sm the SMSC accepted, with the id it answered. Receipts find their
-- part by (mno, smsc_id). When an SMSC hands an id out again (a counter restarted), the
-- newer part takes it and the older is marked superseded.
CREATE TABLE message_parts (
    message_id  bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    part_no     int NOT NULL,                         -- 1.. in the order of the submit result's ids
    mno         text NOT NULL,
    smsc_id     text NOT NULL,                        -- normalised (smpp.NormalizeMessageID)
    state       text NOT NULL DEFAULT 'submitted' CHECK (state IN ('submitted', 'enroute', 'accepted',
                    'unknown', 'delivered', 'undeliverable', 'expired', 'rejected', 'deleted')),
    stat        text NOT NULL DEFAULT '',             -- the receipt's raw stat word
    err         text NOT NULL DEFAULT '',             -- the receipt's raw err
    done_at     timestamptz,
    superseded  boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, part_no)
) WITH (fillfactor = 80); -- receipts update rows in place (HOT)
CREATE UNIQUE INDEX message_parts_smsc_key ON message_parts (mno, smsc_id) WHERE NOT superseded;

-- Every delivery receipt as received, duplicates included. message_id stays NULL until the
-- part it reports on is known: those rows are the "receipt before submit_sm_resp" buffer
-- that RecordSubmitted drains.
CREATE TABLE receipts (
    id          bigserial PRIMARY KEY,
    mno         text NOT NULL,
    smsc_id     text NOT NULL,
    state       text NOT NULL,                        -- smpp.ReceiptState
    stat        text NOT NULL DEFAULT '',
    err         text NOT NULL DEFAULT '',
    done_at     timestamptz,
    received_at timestamptz NOT NULL,
    message_id  bigint,                               -- NULL until matched
    part_no     int,
    matched_at  timestamptz
);
CREATE INDEX receipts_unmatched_idx ON receipts (mno, smsc_id) WHERE message_id IS NULL;

-- Mobile-originated SMS, stored before the SMSC is acknowledged. handled_at is set by
-- whatever processes them (keywords, survey replies).
CREATE TABLE inbound_messages (
    id          bigserial PRIMARY KEY,
    mno         text NOT NULL,
    from_msisdn text NOT NULL,                        -- E.164 digits, or national as the SMSC sent it
    to_addr     text NOT NULL DEFAULT '',             -- the short code
    body        text NOT NULL,
    parts       int NOT NULL DEFAULT 1,
    partial     boolean NOT NULL DEFAULT false,       -- some parts never arrived
    received_at timestamptz NOT NULL,
    stored_at   timestamptz NOT NULL DEFAULT now(),
    handled_at  timestamptz
);
CREATE INDEX inbound_unhandled_idx ON inbound_messages (id) WHERE handled_at IS NULL;
CREATE INDEX inbound_from_idx ON inbound_messages (from_msisdn, received_at);

-- +goose Down
DROP TABLE inbound_messages;
DROP TABLE receipts;
DROP TABLE message_parts;
DROP TABLE messages;
