-- The agent orchestrator's topics, with the partition counts of its
-- migration plan. Every event carries its own time (event_ts, epoch ms).

-- Session lifecycle, keyed by session id: SESSION_CREATED,
-- WORKFLOW_STATE_UPDATED, SESSION_COMPLETED, SESSION_FAILED.
CREATE STREAM session_events (
  session_id STRING KEY,
  event_type STRING,
  event_ts BIGINT,
  project STRING,
  workflow_state STRING,
  iteration INT,
  manager_model STRING,
  worker_model STRING,
  reason STRING
) WITH (kafka_topic = 'session.events', value_format = 'JSON', partitions = 6,
        timestamp = 'event_ts');

-- Tasks run by manager agents (planning, review) and by worker agents
-- (coding, testing, docs), keyed by correlation id: TASK_ASSIGNED, then
-- TASK_COMPLETED or TASK_FAILED with the same correlation id. A retry is a
-- new correlation id for the same task_id and a higher attempt.
CREATE STREAM manager_tasks (
  correlation_id STRING KEY,
  event_type STRING,
  event_ts BIGINT,
  session_id STRING,
  task_id STRING,
  attempt INT,
  agent_role STRING,
  agent_id STRING,
  model STRING,
  duration_ms BIGINT,
  tokens INT,
  error STRING
) WITH (kafka_topic = 'agent.tasks.manager', value_format = 'JSON', partitions = 3,
        timestamp = 'event_ts');

CREATE STREAM worker_tasks (
  correlation_id STRING KEY,
  event_type STRING,
  event_ts BIGINT,
  session_id STRING,
  task_id STRING,
  attempt INT,
  agent_role STRING,
  agent_id STRING,
  model STRING,
  duration_ms BIGINT,
  tokens INT,
  error STRING
) WITH (kafka_topic = 'agent.tasks.worker', value_format = 'JSON', partitions = 3,
        timestamp = 'event_ts');

-- Quality gates run at the end of each iteration, keyed by session id.
CREATE STREAM quality_gates (
  session_id STRING KEY,
  event_ts BIGINT,
  gate STRING,
  passed BOOLEAN,
  score DOUBLE,
  iteration INT
) WITH (kafka_topic = 'quality.gates', value_format = 'JSON', partitions = 2,
        timestamp = 'event_ts');

-- Agent heartbeats and resource use, keyed by agent id.
CREATE STREAM monitoring_events (
  agent_id STRING KEY,
  event_ts BIGINT,
  session_id STRING,
  agent_role STRING,
  status STRING,
  cpu_pct DOUBLE,
  tokens_total BIGINT
) WITH (kafka_topic = 'monitoring.events', value_format = 'JSON', partitions = 12,
        timestamp = 'event_ts');
