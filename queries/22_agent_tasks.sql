-- All task events of managers and workers in one stream.
CREATE STREAM task_events AS SELECT * FROM manager_tasks EMIT CHANGES;
INSERT INTO task_events SELECT * FROM worker_tasks EMIT CHANGES;

-- Task latency per agent role per minute, published on the orchestrator's
-- analytics.aggregated topic for its dashboards. task_events merges two
-- topics, so its event time is only as ordered as the two queries feeding
-- it are in step: after a backlog (a restart, the demo's backfill) one
-- input can run minutes ahead of the other. The long grace period keeps
-- the slower input's tasks instead of dropping them as late.
CREATE TABLE task_latency_by_role
  WITH (kafka_topic = 'analytics.aggregated', partitions = 6) AS
  SELECT agent_role,
         COUNT(*) AS tasks,
         SUM(CASE WHEN event_type = 'TASK_FAILED' THEN 1 ELSE 0 END) AS failures,
         AVG(duration_ms) AS avg_ms,
         APPROX_PERCENTILE(duration_ms, 0.95) AS p95_ms,
         MAX(duration_ms) AS max_ms
  FROM task_events
  WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 30 MINUTES)
  WHERE event_type IN ('TASK_COMPLETED', 'TASK_FAILED')
  GROUP BY agent_role
  EMIT CHANGES;

-- Assigned and finished events of the same task attempt, joined on the
-- correlation id: how long each attempt took from assignment to outcome.
CREATE STREAM tasks_assigned AS
  SELECT * FROM task_events WHERE event_type = 'TASK_ASSIGNED' EMIT CHANGES;
CREATE STREAM tasks_finished AS
  SELECT * FROM task_events WHERE event_type IN ('TASK_COMPLETED', 'TASK_FAILED') EMIT CHANGES;
CREATE STREAM task_roundtrips AS
  SELECT a.correlation_id AS correlation_id,
         a.session_id AS session_id,
         a.task_id AS task_id,
         a.attempt AS attempt,
         a.agent_role AS agent_role,
         a.model AS model,
         a.event_ts AS assigned_at,
         f.event_ts AS finished_at,
         f.event_ts - a.event_ts AS roundtrip_ms,
         f.event_type AS outcome,
         f.error AS error
  FROM tasks_assigned a
  JOIN tasks_finished f WITHIN 30 MINUTES ON a.correlation_id = f.correlation_id
  EMIT CHANGES;

-- Tasks per session, for the sessions dashboard.
CREATE TABLE session_tasks AS
  SELECT session_id,
         SUM(CASE WHEN event_type = 'TASK_ASSIGNED' THEN 1 ELSE 0 END) AS assigned,
         SUM(CASE WHEN event_type = 'TASK_COMPLETED' THEN 1 ELSE 0 END) AS completed,
         SUM(CASE WHEN event_type = 'TASK_FAILED' THEN 1 ELSE 0 END) AS failed,
         SUM(tokens) AS tokens
  FROM task_events
  GROUP BY session_id
  EMIT CHANGES;
