//! Push queries on a real broker: one `sluice serve --kafka` (no cluster)
//! streams a push query's rows, then `DROP STREAM ... DELETE TOPIC` ends
//! the query with an error frame, deletes the topic once nothing on the
//! server reads it, and the server stays up. Both halves once failed on
//! Kafka only: starting a push query blocked the HTTP runtime and panicked,
//! and deleting a topic under a reader crashed librdkafka on Tansu.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{KillOnDrop, free_port, healthy, post, serve_on_kafka, work_dir_with_queries};
use sluice_connectors::kafka::tansu::TansuBroker;
use sluice_connectors::{KafkaConfig, KafkaTopics};
use sluice_engine::topic::TopicBackend;

fn ksql(port: u16, statement: &str) -> String {
    let body = serde_json::json!({ "ksql": statement }).to_string();
    post(port, "/ksql", &body).unwrap_or_default()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Reads the push query's answer until `until` holds or `limit` passes.
fn read_until(stream: &mut TcpStream, seen: &mut String, limit: Duration, until: &str) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return seen.contains(until),
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => {}
        }
        if seen.contains(until) {
            return true;
        }
    }
    false
}

#[test]
fn a_push_query_streams_and_ends_when_its_source_is_dropped_with_its_topic() {
    let broker = TansuBroker::start().expect("a Tansu broker");
    let bootstrap = broker.bootstrap_servers();
    let topics = KafkaTopics::connect(KafkaConfig::new(bootstrap.clone())).expect("connected");
    let work = work_dir_with_queries("kafka-push", "none.sql", "");
    let port = free_port();
    let mut server: KillOnDrop =
        serve_on_kafka(&bootstrap, &work, port, &[], &work.join("server.log"));
    wait_for("the server", Duration::from_secs(60), || healthy(port));
    let created = ksql(
        port,
        "CREATE STREAM pings (id STRING KEY, v INT) WITH (kafka_topic='pings', partitions=2, value_format='JSON');",
    );
    assert!(created.contains("SUCCESS"), "{created}");

    let mut push = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    push.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let body = r#"{"sql":"SELECT * FROM pings EMIT CHANGES;"}"#;
    let request = format!(
        "POST /query-stream HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/vnd.ksql.v1+json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    push.write_all(request.as_bytes()).expect("request");
    let mut seen = String::new();
    assert!(
        read_until(&mut push, &mut seen, Duration::from_secs(30), "columnNames"),
        "no header: {seen}"
    );
    let inserted = ksql(port, "INSERT INTO pings (id, v) VALUES ('a', 7);");
    assert!(inserted.contains("SUCCESS"), "{inserted}");
    assert!(
        read_until(&mut push, &mut seen, Duration::from_secs(30), r#"["a",7]"#),
        "no row: {seen}"
    );

    let dropped = ksql(port, "DROP STREAM pings DELETE TOPIC;");
    assert!(dropped.contains("SUCCESS"), "{dropped}");
    assert!(
        read_until(&mut push, &mut seen, Duration::from_secs(30), "was dropped"),
        "the push query did not end with the drop: {seen}"
    );
    wait_for("the topic to be deleted", Duration::from_secs(30), || {
        topics.describe_topic("pings").is_none()
    });
    // A reader left on the deleted topic would crash the server now.
    std::thread::sleep(Duration::from_secs(10));
    assert!(
        matches!(server.0.try_wait(), Ok(None)) && healthy(port),
        "the server died: {:?}\n{}",
        server.0.try_wait(),
        std::fs::read_to_string(work.join("server.log")).unwrap_or_default()
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&work);
}
