-- Stateless queries: projection, aliases, WHERE, arithmetic, CASE, struct,
-- array and map access, LIKE, BETWEEN, IN, IS NULL.
CREATE STREAM events (match_id STRING KEY, player STRUCT<name STRING, robot BOOLEAN>,
                      latency_ms INT, tags ARRAY<STRING>, scores MAP<STRING, INT>)
  WITH (kafka_topic='events', value_format='JSON', partitions=1);
CREATE STREAM robot_replies AS
  SELECT match_id, player->name AS who, latency_ms / 1000.0 AS seconds,
         CASE WHEN latency_ms > 500 THEN 'slow' ELSE 'fast' END AS speed,
         tags[1] AS first_tag, scores['total'] AS total
  FROM events
  WHERE player->robot AND latency_ms BETWEEN 1 AND 10000;
CREATE STREAM named AS
  SELECT match_id, player->name AS name, latency_ms IS NULL AS no_latency
  FROM events
  WHERE player->name LIKE 'gpt%' OR latency_ms IN (7, 8);
--! input events m1 1000 {"player": {"name": "gpt-4", "robot": true}, "latency_ms": 750, "tags": ["a", "b"], "scores": {"total": 3}}
--! input events m1 2000 {"player": {"name": "ana", "robot": false}, "latency_ms": 8}
--! input events m2 3000 {"player": {"name": "claude", "robot": true}, "latency_ms": 120, "tags": []}
--! input events m3 4000 null
