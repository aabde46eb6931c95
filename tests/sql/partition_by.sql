-- PARTITION BY re-keys a stream: by a value column, a struct field, an
-- expression, several columns (JSON key), and NULL (no key at all).
CREATE STREAM moves (match_id STRING KEY, player STRUCT<name STRING, robot BOOLEAN>,
                     turn INT, text STRING)
  WITH (kafka_topic='moves', value_format='JSON', partitions=2);
CREATE STREAM moves_by_player AS SELECT * FROM moves PARTITION BY player->name;
CREATE STREAM moves_by_turn AS SELECT turn % 2 AS parity, match_id, text FROM moves PARTITION BY turn % 2;
CREATE STREAM moves_by_pair WITH (key_format='JSON') AS
  SELECT match_id, turn, text FROM moves PARTITION BY match_id, turn;
CREATE STREAM moves_unkeyed AS SELECT match_id, text FROM moves PARTITION BY NULL;
-- Rejected: the new key must be selected, and only once.
CREATE STREAM bad1 AS SELECT match_id, text FROM moves PARTITION BY ABS(turn);
CREATE STREAM bad2 AS SELECT text, text AS t2 FROM moves PARTITION BY text;
CREATE STREAM bad3 AS SELECT text AS t FROM moves PARTITION BY t;
--! input moves m1 1000 {"player": {"name": "ana", "robot": false}, "turn": 1, "text": "hi"}
--! input moves m1 2000 {"player": {"name": "gpt", "robot": true}, "turn": 2, "text": "hello"}
--! input moves m2 3000 {"turn": 3, "text": "who?"}
--! input moves m2 4000 null
