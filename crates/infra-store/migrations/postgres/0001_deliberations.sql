-- Deliberations, their ranked proposals, the reviews those received and the agents that failed.
-- JSON columns are text written by serde_json; timestamps are Unix milliseconds.
-- task_id is COLLATE "C" so keyset paging orders it bytewise, as SQLite does.

CREATE TABLE deliberations (
    task_id           TEXT    COLLATE "C" NOT NULL PRIMARY KEY,
    role              TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    task_description  TEXT    NOT NULL,
    request           TEXT    NOT NULL,  -- NewDeliberation as JSON
    created_at_ms     BIGINT NOT NULL,
    started_at_ms     BIGINT,
    finished_at_ms    BIGINT,
    duration_ms       BIGINT,
    winner_id         TEXT,
    error             TEXT,
    progress          TEXT,              -- last saved Deliberation aggregate as JSON
    prompt_tokens     BIGINT,           -- total usage, set on completion
    completion_tokens BIGINT,
    calls             BIGINT,
    latency_ms        BIGINT
);

CREATE INDEX deliberations_by_created ON deliberations (created_at_ms DESC, task_id DESC);
CREATE INDEX deliberations_by_role_created ON deliberations (role, created_at_ms DESC, task_id DESC);
CREATE INDEX deliberations_by_status_created ON deliberations (status, created_at_ms DESC, task_id DESC);

CREATE TABLE proposals (
    task_id           TEXT    COLLATE "C" NOT NULL REFERENCES deliberations (task_id) ON DELETE CASCADE,
    agent_id          TEXT    NOT NULL,
    ordinal           BIGINT NOT NULL,  -- position in the ranked results
    rank              BIGINT NOT NULL,
    agent_role        TEXT    NOT NULL,
    profile           TEXT    NOT NULL,
    seat              BIGINT NOT NULL,
    author            TEXT    NOT NULL,
    content           TEXT    NOT NULL,
    revisions         TEXT    NOT NULL,  -- earlier versions, oldest first, JSON array
    created_at_ms     BIGINT NOT NULL,
    checks            TEXT    NOT NULL,  -- CheckSuite as JSON
    check_score       DOUBLE PRECISION    NOT NULL,
    peer_score        DOUBLE PRECISION,
    score             DOUBLE PRECISION    NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    calls             BIGINT NOT NULL,
    latency_ms        BIGINT NOT NULL,
    PRIMARY KEY (task_id, agent_id)
);

CREATE TABLE reviews (
    task_id           TEXT    COLLATE "C" NOT NULL,
    proposal_agent_id TEXT    NOT NULL,  -- the ranked proposal that received the review
    ordinal           BIGINT NOT NULL,  -- position among that proposal's reviews
    reviewer          TEXT    NOT NULL,
    target            TEXT    NOT NULL,
    round             BIGINT NOT NULL,
    score             DOUBLE PRECISION,              -- NULL: the review held no usable grade
    critique          TEXT    NOT NULL,
    issues            TEXT    NOT NULL,  -- JSON array
    PRIMARY KEY (task_id, proposal_agent_id, ordinal),
    FOREIGN KEY (task_id, proposal_agent_id) REFERENCES proposals (task_id, agent_id) ON DELETE CASCADE
);

CREATE INDEX reviews_by_reviewer ON reviews (task_id, reviewer);

CREATE TABLE agent_failures (
    task_id  TEXT    COLLATE "C" NOT NULL REFERENCES deliberations (task_id) ON DELETE CASCADE,
    ordinal  BIGINT NOT NULL,
    agent_id TEXT    NOT NULL,
    phase    TEXT    NOT NULL,
    round    BIGINT NOT NULL,
    reason   TEXT    NOT NULL,
    PRIMARY KEY (task_id, ordinal)
);
