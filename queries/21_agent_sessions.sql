-- Session state, event-sourced: the latest workflow state of every session
-- folded from its events.
CREATE TABLE session_state AS
  SELECT session_id,
         LATEST_BY_OFFSET(project) AS project,
         MIN(event_ts) AS created_at,
         MAX(event_ts) AS last_update,
         LATEST_BY_OFFSET(workflow_state) AS workflow_state,
         MAX(iteration) AS iterations,
         LATEST_BY_OFFSET(manager_model) AS manager_model,
         LATEST_BY_OFFSET(worker_model) AS worker_model,
         LATEST_BY_OFFSET(reason) AS reason,
         COUNT(*) AS events
  FROM session_events
  GROUP BY session_id
  EMIT CHANGES;

-- Latest heartbeat of every agent.
CREATE TABLE agent_status AS
  SELECT agent_id,
         LATEST_BY_OFFSET(agent_role) AS agent_role,
         LATEST_BY_OFFSET(session_id) AS session_id,
         LATEST_BY_OFFSET(status) AS status,
         LATEST_BY_OFFSET(cpu_pct) AS cpu_pct,
         MAX(tokens_total) AS tokens_total,
         MAX(event_ts) AS last_seen
  FROM monitoring_events
  GROUP BY agent_id
  EMIT CHANGES;
