-- Joins: stream-stream (eager and with a grace period), stream-table,
-- table-table, a three-way join, and the errors ksqlDB gives.
CREATE STREAM messages (match_id STRING KEY, author STRING, text STRING)
  WITH (kafka_topic='messages', value_format='JSON', partitions=1);
CREATE STREAM replies (match_id STRING KEY, model STRING, latency_ms INT)
  WITH (kafka_topic='replies', value_format='JSON', partitions=1);
CREATE TABLE matches (match_id STRING PRIMARY KEY, mode STRING)
  WITH (kafka_topic='matches', value_format='JSON', partitions=1);
CREATE TABLE results (match_id STRING PRIMARY KEY, winner STRING)
  WITH (kafka_topic='results', value_format='JSON', partitions=1);
CREATE STREAM answered AS
  SELECT m.match_id, author, text, model, latency_ms
  FROM messages m LEFT JOIN replies r WITHIN 5 SECONDS ON m.match_id = r.match_id;
CREATE STREAM answered_late AS
  SELECT m.match_id, author, model
  FROM messages m LEFT JOIN replies r WITHIN 5 SECONDS GRACE PERIOD 1 SECOND ON m.match_id = r.match_id;
CREATE STREAM with_mode AS
  SELECT m.match_id AS id, author, mode FROM messages m JOIN matches x ON m.match_id = x.match_id;
CREATE TABLE summary AS
  SELECT x.match_id, mode, winner FROM matches x FULL OUTER JOIN results r ON x.match_id = r.match_id;
CREATE TABLE summary2 AS
  SELECT ROWKEY AS id, mode, winner FROM matches x FULL OUTER JOIN results r ON x.match_id = r.match_id;
CREATE STREAM three AS
  SELECT m.match_id, text, mode, winner FROM messages m
    JOIN matches x ON m.match_id = x.match_id
    LEFT JOIN results r ON m.match_id = r.match_id;
CREATE STREAM bad1 AS SELECT author FROM messages m JOIN replies r WITHIN 1 SECOND ON m.match_id = r.match_id;
CREATE STREAM bad2 AS SELECT * FROM messages m JOIN replies r ON m.match_id = r.match_id;
CREATE STREAM bad3 AS SELECT * FROM matches x JOIN messages m ON m.match_id = x.match_id;
CREATE STREAM bad4 AS SELECT * FROM messages m JOIN matches x ON m.author = x.mode;
--! input matches m1 0 {"mode": "ranked"}
--! input messages m1 1000 {"author": "ana", "text": "hi"}
--! input replies m1 2000 {"model": "gpt", "latency_ms": 900}
--! input messages m2 3000 {"author": "bo", "text": "yo"}
--! input messages m1 20000 {"author": "ana", "text": "bye"}
--! input results m1 21000 {"winner": "robot"}
--! input messages m1 22000 {"author": "ana", "text": "gg"}
--! input results m9 23000 {"winner": "human"}
--! input matches m1 24000 null
