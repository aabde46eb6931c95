-- Matches started per minute and game mode.
CREATE TABLE matches_per_minute AS
  SELECT mode, COUNT(*) AS started
  FROM match_events
  WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 30 SECONDS)
  WHERE event_type = 'MATCH_CREATED'
  GROUP BY mode
  EMIT CHANGES;

-- Robot win rate and p95 response latency per model, over 5-minute windows
-- advancing every minute.
CREATE TABLE robot_model_performance AS
  SELECT model,
         SUM(CASE WHEN event_type = 'MATCH_ENDED' THEN 1 ELSE 0 END) AS matches,
         SUM(CASE WHEN event_type = 'MATCH_ENDED' AND winner = 'ROBOT' THEN 1 ELSE 0 END) AS robot_wins,
         AVG(CASE WHEN event_type = 'MATCH_ENDED'
                  THEN CASE WHEN winner = 'ROBOT' THEN 1.0 ELSE 0.0 END END) AS win_rate,
         COUNT(latency_ms) AS responses,
         APPROX_PERCENTILE(latency_ms, 0.95) AS p95_latency_ms
  FROM match_events
  WINDOW HOPPING (SIZE 5 MINUTES, ADVANCE BY 1 MINUTE, GRACE PERIOD 30 SECONDS)
  WHERE model IS NOT NULL AND event_type IN ('ROBOT_RESPONSE', 'MATCH_ENDED')
  GROUP BY model
  EMIT CHANGES;
