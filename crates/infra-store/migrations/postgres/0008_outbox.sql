-- The transactional outbox: each lifecycle event is stored in the transaction of the state
-- change it reports, and deleted once the broker acknowledged it (so the table holds only
-- what is still to be sent). `seq` numbers a deliberation's events 1, 2, 3…; the broker's
-- deduplication id is "<task_id>:<event>:<seq>".
ALTER TABLE deliberations ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0;

CREATE TABLE outbox (
    id            BIGSERIAL PRIMARY KEY,
    task_id       TEXT   COLLATE "C" NOT NULL,
    seq           BIGINT NOT NULL,
    event         TEXT   NOT NULL,
    payload       TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (task_id, seq)
);

-- The one relay among the servers sharing the database: a lease like a deliberation's,
-- fenced by its epoch.
CREATE TABLE outbox_relay (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    owner    TEXT   NOT NULL,
    until_ms BIGINT NOT NULL,
    epoch    BIGINT NOT NULL
);
