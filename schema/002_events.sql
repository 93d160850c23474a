-- Waiting for the outside world: message subscriptions of instances (catch events, receive tasks,
-- message boundary events) and of process definitions (message start events), and the
-- definition a timer start job belongs to.

CREATE TABLE event_subscription (
    id            INTEGER PRIMARY KEY,
    type          TEXT NOT NULL CHECK (type = 'message'),
    name          TEXT NOT NULL,
    tenant_id     TEXT NOT NULL DEFAULT '',
    definition_id INTEGER REFERENCES process_definition(id),
    instance_id   INTEGER REFERENCES process_instance(id),
    execution_id  INTEGER,
    activity_id   TEXT NOT NULL,
    act_inst_id   INTEGER,
    created_at    INTEGER NOT NULL,
    CHECK ((instance_id IS NULL) = (definition_id IS NOT NULL))
);
CREATE INDEX event_subscription_name ON event_subscription(tenant_id, name);
CREATE INDEX event_subscription_execution ON event_subscription(execution_id);
CREATE INDEX event_subscription_instance ON event_subscription(instance_id);
CREATE INDEX process_instance_business_key ON process_instance(business_key)
    WHERE business_key IS NOT NULL;

ALTER TABLE job ADD COLUMN definition_id INTEGER REFERENCES process_definition(id);
CREATE INDEX job_definition ON job(definition_id) WHERE definition_id IS NOT NULL;
CREATE INDEX job_execution ON job(execution_id);
CREATE INDEX process_instance_super ON process_instance(super_execution_id) WHERE super_execution_id IS NOT NULL;
ALTER TABLE process_instance ADD COLUMN super_instance_id INTEGER REFERENCES process_instance(id);
