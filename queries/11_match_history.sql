-- Match history: one row per match, kept up to date as its events arrive.
-- The web UI's match list and the match-history API read this table.
CREATE TABLE match_history AS
  SELECT match_id,
         LATEST_BY_OFFSET(mode) AS mode,
         MIN(event_ts) AS started_at,
         MAX(event_ts) AS last_update,
         MAX(event_ts) - MIN(event_ts) AS duration_ms,
         FILTER(COLLECT_SET(CASE WHEN event_type = 'PLAYER_JOINED' THEN player_id END),
                p => p IS NOT NULL) AS players,
         LATEST_BY_OFFSET(CASE WHEN player_kind = 'ROBOT' THEN model END) AS robot_model,
         SUM(CASE WHEN event_type IN ('MESSAGE_SENT', 'ROBOT_RESPONSE') THEN 1 ELSE 0 END) AS messages,
         SUM(CASE WHEN event_type = 'VOTE_CAST' THEN 1 ELSE 0 END) AS votes,
         CASE WHEN SUM(CASE WHEN event_type = 'MATCH_ENDED' THEN 1 ELSE 0 END) > 0
              THEN 'FINISHED' ELSE 'LIVE' END AS status,
         LATEST_BY_OFFSET(winner) AS winner,
         LATEST_BY_OFFSET(reason) AS reason
  FROM match_events
  GROUP BY match_id
  EMIT CHANGES;
