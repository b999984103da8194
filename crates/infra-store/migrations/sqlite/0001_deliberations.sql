-- Deliberations, their ranked proposals, the reviews those received and the agents that failed.
-- JSON columns are text written by serde_json; timestamps are Unix milliseconds.

CREATE TABLE deliberations (
    task_id           TEXT    NOT NULL PRIMARY KEY,
    role              TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    task_description  TEXT    NOT NULL,
    request           TEXT    NOT NULL,  -- NewDeliberation as JSON
    created_at_ms     INTEGER NOT NULL,
    started_at_ms     INTEGER,
    finished_at_ms    INTEGER,
    duration_ms       INTEGER,
    winner_id         TEXT,
    error             TEXT,
    progress          TEXT,              -- last saved Deliberation aggregate as JSON
    prompt_tokens     INTEGER,           -- total usage, set on completion
    completion_tokens INTEGER,
    calls             INTEGER,
    latency_ms        INTEGER
);

CREATE INDEX deliberations_by_created ON deliberations (created_at_ms DESC, task_id DESC);
CREATE INDEX deliberations_by_role_created ON deliberations (role, created_at_ms DESC, task_id DESC);
CREATE INDEX deliberations_by_status_created ON deliberations (status, created_at_ms DESC, task_id DESC);

CREATE TABLE proposals (
    task_id           TEXT    NOT NULL REFERENCES deliberations (task_id) ON DELETE CASCADE,
    agent_id          TEXT    NOT NULL,
    ordinal           INTEGER NOT NULL,  -- position in the ranked results
    rank              INTEGER NOT NULL,
    agent_role        TEXT    NOT NULL,
    profile           TEXT    NOT NULL,
    seat              INTEGER NOT NULL,
    author            TEXT    NOT NULL,
    content           TEXT    NOT NULL,
    revisions         TEXT    NOT NULL,  -- earlier versions, oldest first, JSON array
    created_at_ms     INTEGER NOT NULL,
    checks            TEXT    NOT NULL,  -- CheckSuite as JSON
    check_score       REAL    NOT NULL,
    peer_score        REAL,
    score             REAL    NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    calls             INTEGER NOT NULL,
    latency_ms        INTEGER NOT NULL,
    PRIMARY KEY (task_id, agent_id)
);

CREATE TABLE reviews (
    task_id           TEXT    NOT NULL,
    proposal_agent_id TEXT    NOT NULL,  -- the ranked proposal that received the review
    ordinal           INTEGER NOT NULL,  -- position among that proposal's reviews
    reviewer          TEXT    NOT NULL,
    target            TEXT    NOT NULL,
    round             INTEGER NOT NULL,
    score             REAL,              -- NULL: the review held no usable grade
    critique          TEXT    NOT NULL,
    issues            TEXT    NOT NULL,  -- JSON array
    PRIMARY KEY (task_id, proposal_agent_id, ordinal),
    FOREIGN KEY (task_id, proposal_agent_id) REFERENCES proposals (task_id, agent_id) ON DELETE CASCADE
);

CREATE INDEX reviews_by_reviewer ON reviews (task_id, reviewer);

CREATE TABLE agent_failures (
    task_id  TEXT    NOT NULL REFERENCES deliberations (task_id) ON DELETE CASCADE,
    ordinal  INTEGER NOT NULL,
    agent_id TEXT    NOT NULL,
    phase    TEXT    NOT NULL,
    round    INTEGER NOT NULL,
    reason   TEXT    NOT NULL,
    PRIMARY KEY (task_id, ordinal)
);
