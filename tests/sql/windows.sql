-- Windowed aggregation: tumbling with bounds in the projection, a session
-- merge (the replaced session is retracted), EMIT FINAL, a late record
-- and an impossible retention.
CREATE STREAM replies (model STRING KEY, latency_ms INT)
  WITH (kafka_topic='replies', value_format='JSON', partitions=1);
CREATE TABLE latency_per_minute AS
  SELECT model, WINDOWSTART AS minute_start, WINDOWEND AS minute_end, COUNT(*) AS replies, MAX(latency_ms) AS worst
  FROM replies WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 30 SECONDS)
  GROUP BY model;
CREATE TABLE bursts AS
  SELECT model, COUNT(*) AS replies FROM replies WINDOW SESSION (20 SECONDS) GROUP BY model;
CREATE TABLE final_per_minute AS
  SELECT model, COUNT(*) AS replies FROM replies WINDOW HOPPING (SIZE 1 MINUTE, ADVANCE BY 30 SECONDS, RETENTION 10 MINUTES, GRACE PERIOD 0 SECONDS)
  GROUP BY model EMIT FINAL;
CREATE TABLE impossible AS
  SELECT model, COUNT(*) AS replies FROM replies WINDOW TUMBLING (SIZE 1 MINUTE, RETENTION 1 MINUTE, GRACE PERIOD 1 MINUTE)
  GROUP BY model;
--! input replies gpt 1000 {"latency_ms": 300}
--! input replies gpt 30000 {"latency_ms": 900}
--! input replies claude 15000 {"latency_ms": 250}
--! input replies gpt 10000 {"latency_ms": 450}
--! input replies gpt 65000 {"latency_ms": 120}
--! input replies gpt 95000 {"latency_ms": 700}
--! input replies gpt 20000 {"latency_ms": 999}
--! input replies claude 200000 {"latency_ms": 100}
