-- GROUP BY over a stream (an update per input record) and over a table
-- (the old row is retracted before the new one is added).
CREATE STREAM votes (match_id STRING KEY, voter STRING, guess STRING, correct BOOLEAN)
  WITH (kafka_topic='votes', value_format='JSON', partitions=1);
CREATE TABLE votes_per_match AS
  SELECT match_id, COUNT(*) AS votes, SUM(CASE WHEN correct THEN 1 ELSE 0 END) AS right_guesses
  FROM votes GROUP BY match_id HAVING COUNT(*) > 1;
-- JSON, not DELIMITED: AVG's intermediate state is a struct, which a
-- DELIMITED state store cannot hold (ksqlDB rejects that too).
CREATE TABLE players (id STRING PRIMARY KEY, team STRING, rating INT)
  WITH (kafka_topic='players', value_format='JSON', partitions=1);
CREATE TABLE teams AS
  SELECT team, COUNT(*) AS members, SUM(rating) AS total_rating, AVG(rating) AS mean_rating
  FROM players GROUP BY team;
--! input votes m1 1 {"voter": "ana", "guess": "robot", "correct": true}
--! input votes m1 2 {"voter": "bob", "guess": "human", "correct": false}
--! input votes m2 3 {"voter": "ana", "guess": "robot", "correct": true}
--! input votes m1 4 {"voter": "cyd", "guess": "robot", "correct": true}
--! input players ana 5 {"team": "red", "rating": 10}
--! input players bob 6 {"team": "blue", "rating": 20}
--! input players cyd 7 {"team": "red", "rating": 30}
--! input players ana 8 {"team": "blue", "rating": 15}
--! input players cyd 9 null
