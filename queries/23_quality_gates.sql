-- Quality-gate pass rate per gate over 10-minute windows.
CREATE TABLE quality_gate_pass_rate AS
  SELECT gate,
         COUNT(*) AS runs,
         SUM(CASE WHEN passed THEN 1 ELSE 0 END) AS passed,
         AVG(CASE WHEN passed THEN 1.0 ELSE 0.0 END) AS pass_rate,
         AVG(score) AS avg_score
  FROM quality_gates
  WINDOW TUMBLING (SIZE 10 MINUTES, GRACE PERIOD 1 MINUTE)
  GROUP BY gate
  EMIT CHANGES;
