-- Leaderboards. A finished match lists its players (humans and the robot)
-- in MATCH_ENDED; exploding that list gives one result row per player.
CREATE STREAM match_results AS
  SELECT match_id, EXPLODE(players) AS player, winner, reason, event_ts
  FROM match_events
  WHERE event_type = 'MATCH_ENDED'
  EMIT CHANGES;

-- Per player: matches played and won. Humans win together when they unmask
-- the robot; the robot wins when it goes unnoticed.
CREATE TABLE player_leaderboard AS
  SELECT player->id AS player_id,
         LATEST_BY_OFFSET(player->kind) AS kind,
         COUNT(*) AS matches,
         SUM(CASE WHEN (player->kind = 'HUMAN' AND winner = 'HUMANS')
                    OR (player->kind = 'ROBOT' AND winner = 'ROBOT') THEN 1 ELSE 0 END) AS wins,
         MAX(event_ts) AS last_played
  FROM match_results
  GROUP BY player->id
  EMIT CHANGES;

-- Per robot model, over all time: matches, wins, mean latency and tokens.
CREATE TABLE robot_model_leaderboard AS
  SELECT model,
         SUM(CASE WHEN event_type = 'MATCH_ENDED' THEN 1 ELSE 0 END) AS matches,
         SUM(CASE WHEN event_type = 'MATCH_ENDED' AND winner = 'ROBOT' THEN 1 ELSE 0 END) AS wins,
         COUNT(latency_ms) AS responses,
         AVG(latency_ms) AS avg_latency_ms,
         AVG(tokens) AS avg_tokens
  FROM match_events
  WHERE model IS NOT NULL AND event_type IN ('ROBOT_RESPONSE', 'MATCH_ENDED')
  GROUP BY model
  EMIT CHANGES;
