-- The match game's event log (topic match.events): every event of every
-- match, keyed by match id so that a match's events stay in order on one
-- partition. Event time is the game server's clock (event_ts, epoch ms).
--
-- event_type        fields set
-- MATCH_CREATED     mode
-- PLAYER_JOINED     player_id, player_kind (HUMAN | ROBOT), model (robots)
-- MESSAGE_SENT      player_id, player_kind, text
-- ROBOT_RESPONSE    player_id, model, text, latency_ms, tokens
-- VOTE_CAST         voter_id, suspect_id
-- MATCH_ENDED       winner (HUMANS | ROBOT), reason, model, players
CREATE STREAM match_events (
  match_id STRING KEY,
  event_type STRING,
  event_ts BIGINT,
  mode STRING,
  player_id STRING,
  player_kind STRING,
  model STRING,
  text STRING,
  latency_ms INT,
  tokens INT,
  voter_id STRING,
  suspect_id STRING,
  winner STRING,
  reason STRING,
  players ARRAY<STRUCT<id STRING, kind STRING, model STRING>>
) WITH (kafka_topic = 'match.events', value_format = 'JSON', partitions = 3,
        timestamp = 'event_ts');
