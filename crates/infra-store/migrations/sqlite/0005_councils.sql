-- Standing councils (the agent registry), and the standing council each deliberation seated.
-- Existing rows are not changed: deliberations stored before this migration have no council.

CREATE TABLE councils (
    council_id    TEXT    NOT NULL PRIMARY KEY,
    role          TEXT    NOT NULL UNIQUE,  -- one standing council per role
    rounds        INTEGER NOT NULL,         -- default review rounds; 0: no peer review
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE council_agents (
    agent_id         TEXT    NOT NULL PRIMARY KEY,  -- unique service-wide
    council_id       TEXT    NOT NULL REFERENCES councils (council_id) ON DELETE CASCADE,
    seat             INTEGER NOT NULL,              -- order of joining
    role             TEXT    NOT NULL,
    profile          TEXT    NOT NULL,
    persona          TEXT,
    capabilities     TEXT    NOT NULL,              -- {supported_tasks, languages, max_concurrent_tasks} as JSON
    metadata         TEXT    NOT NULL,              -- JSON object of strings
    status           TEXT    NOT NULL,              -- ACTIVE or DRAINING
    registered_at_ms INTEGER NOT NULL,
    UNIQUE (council_id, seat)
);

-- One row. Every registry change updates it first, inside its transaction, so changes from
-- servers sharing the database apply one after the other.
CREATE TABLE registry_version (
    id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO registry_version (id, version) VALUES (1, 0);

-- NULL: an ad-hoc council. Not a foreign key: a deliberation outlives the council it seated.
ALTER TABLE deliberations ADD COLUMN council_id TEXT;
CREATE INDEX deliberations_by_council ON deliberations (council_id, status);
