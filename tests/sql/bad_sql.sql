-- Rejected statements name their position and leave nothing behind.
CREATE STREAM s (id INT KEY, v STRING) WITH (kafka_topic='s', value_format='JSON', partitions=1);
CREATE STREAM t (id INT KEY, v STRING)
  WITH (kafka_topic=, value_format='JSON');
CREATE STREAM u AS SELECT id, nope FROM s;
CREATE STREAM u AS SELECT v FROM s;
CREATE TABLE w AS SELECT id, v FROM s;
CREATE STREAM s (id INT KEY) WITH (kafka_topic='s', value_format='JSON');
CREATE STREAM x (id INT KEY) WITH (kafka_topic='missing', value_format='JSON');
DROP STREAM nothing;
CREATE STREAM u AS SELECT id, v FROM s WHERE v = 1;
CREATE STREAM u AS SELECT id, UPPER(v) AS v FROM s;
SHOW STREAMS;
