-- CHECK constraints are written as OR chains, not IN lists: SQLite 3.40 builds a temporary b-tree
-- for an IN list of three or more values on every INSERT and UPDATE, which cost most of the
-- engine's time (measured with tools/bench).
--
-- The engine's tables: deployments, versioned process definitions, instances as trees of
-- executions, typed variables, jobs (the transactional outbox), incidents, activity history, and
-- the admin configuration of task parameters. All times are UTC milliseconds since the epoch.

CREATE TABLE deployment (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    source      TEXT,
    tenant_id   TEXT NOT NULL DEFAULT '',
    deployed_at INTEGER NOT NULL
);

CREATE TABLE process_definition (
    id            INTEGER PRIMARY KEY,
    key           TEXT NOT NULL,
    version       INTEGER NOT NULL CHECK (version > 0),
    tenant_id     TEXT NOT NULL DEFAULT '',
    name          TEXT,
    deployment_id INTEGER NOT NULL REFERENCES deployment(id),
    resource_name TEXT NOT NULL,
    xml           BLOB NOT NULL,
    sha256        TEXT NOT NULL,
    deployed_at   INTEGER NOT NULL,
    UNIQUE (tenant_id, key, version)
);

CREATE TABLE process_instance (
    id              INTEGER PRIMARY KEY,
    definition_id   INTEGER NOT NULL REFERENCES process_definition(id),
    tenant_id       TEXT NOT NULL DEFAULT '',
    business_key    TEXT,
    state           TEXT NOT NULL CHECK (state = 'CREATED' OR state = 'ACTIVE' OR state = 'COMPLETED' OR state = 'TERMINATED' OR state = 'CANCELED'),
    started_at      INTEGER NOT NULL,
    ended_at        INTEGER,
    super_execution_id INTEGER
);
CREATE INDEX process_instance_state ON process_instance(state);

-- An execution is a token at an activity, or a scope (the process instance itself, a subprocess)
-- holding child executions. The root execution of an instance has parent_id NULL.
CREATE TABLE execution (
    id          INTEGER PRIMARY KEY,
    instance_id INTEGER NOT NULL REFERENCES process_instance(id),
    parent_id   INTEGER REFERENCES execution(id),
    activity_id TEXT,
    state       TEXT NOT NULL CHECK (state = 'READY' OR state = 'WAITING' OR state = 'JOINING' OR state = 'SCOPE' OR state = 'INCIDENT'),
    act_inst_id INTEGER,
    seq         INTEGER NOT NULL DEFAULT 0,
    -- for an execution stopped by an incident: the step to redo when the incident is retried
    resume      TEXT CHECK (resume = 'execute' OR resume = 'leave' OR resume = 'take')
);
CREATE INDEX execution_instance ON execution(instance_id);
CREATE INDEX execution_parent ON execution(parent_id);

CREATE TABLE variable (
    execution_id INTEGER NOT NULL REFERENCES execution(id),
    instance_id  INTEGER NOT NULL REFERENCES process_instance(id),
    name         TEXT NOT NULL,
    type         INTEGER NOT NULL CHECK (type BETWEEN 0 AND 7),
    value        ANY,
    PRIMARY KEY (execution_id, name)
) WITHOUT ROWID;
CREATE INDEX variable_instance ON variable(instance_id);

-- Jobs: every wait the engine itself must resume. A job is created in the same transaction as the
-- state change that needs it; it carries a lock owner and expiry so that several engines can share
-- one database; retries count down on technical failures; attempt counts every execution,
-- including one cut short by a crash.
CREATE TABLE job (
    -- AUTOINCREMENT: an incident keeps pointing at its job's id, never at a later job's.
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    type            TEXT NOT NULL CHECK (type = 'call' OR type = 'async-before' OR type = 'async-after' OR type = 'timer' OR type = 'start' OR type = 'message'),
    instance_id     INTEGER REFERENCES process_instance(id),
    execution_id    INTEGER REFERENCES execution(id),
    activity_id     TEXT,
    act_inst_id     INTEGER,
    due_at          INTEGER NOT NULL,
    retries         INTEGER NOT NULL CHECK (retries >= 0),
    attempt         INTEGER NOT NULL DEFAULT 0,
    -- runs cut short because the engine stopped or crashed while the job was locked by it
    interrupted     INTEGER NOT NULL DEFAULT 0,
    lock_owner      TEXT,
    lock_expires_at INTEGER,
    last_error      TEXT,
    payload         TEXT,
    created_at      INTEGER NOT NULL
);
CREATE INDEX job_due ON job(due_at) WHERE retries > 0;
CREATE INDEX job_instance ON job(instance_id);

CREATE TABLE incident (
    id           INTEGER PRIMARY KEY,
    type         TEXT NOT NULL CHECK (type = 'failedJob' OR type = 'unhandledBpmnError' OR type = 'noMatchingFlow' OR type = 'expression' OR type = 'runawayLoop'),
    instance_id  INTEGER NOT NULL REFERENCES process_instance(id),
    execution_id INTEGER,
    activity_id  TEXT NOT NULL,
    job_id       INTEGER,
    message      TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    resolved_at  INTEGER
);
CREATE INDEX incident_instance ON incident(instance_id);
CREATE INDEX incident_execution ON incident(execution_id) WHERE resolved_at IS NULL;

-- One row per activity instance: start on entry, end (and how it ended) on leave.
CREATE TABLE history_activity (
    id            INTEGER PRIMARY KEY,
    instance_id   INTEGER NOT NULL,
    execution_id  INTEGER,
    activity_id   TEXT NOT NULL,
    activity_type TEXT NOT NULL,
    activity_name TEXT,
    started_at    INTEGER NOT NULL,
    ended_at      INTEGER,
    end_state     TEXT CHECK (end_state = 'completed' OR end_state = 'canceled' OR end_state = 'error')
);
CREATE INDEX history_activity_instance ON history_activity(instance_id);

-- Admin configuration of task parameters, per process key and activity id. It takes precedence
-- over the BPMN's camunda:inputOutput and camunda:field values.
CREATE TABLE task_param (
    tenant_id   TEXT NOT NULL DEFAULT '',
    process_key TEXT NOT NULL,
    activity_id TEXT NOT NULL,
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, process_key, activity_id, name)
) WITHOUT ROWID;
