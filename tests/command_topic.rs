//! The catalog of a cluster travels through its command topic: two `sluice
//! serve` processes on a Tansu broker, started with an empty queries
//! folder, learn every stream, table and query from the statements sent to
//! either of them over REST. A table created through one is run by both
//! (each owning some of its input partitions), with the same query id, and
//! exact by a pull query on the other; `TERMINATE` and `DROP` sent to one
//! take effect on the other; a member killed and started again comes back
//! with the catalog the topic holds; bad SQL is refused before it reaches
//! the topic. Members started together with the same queries folder load
//! it once, with the same query ids.
//!
//! An ignored test measures what the topic adds to a statement's latency:
//! `cargo test --workspace --test command_topic -- --ignored --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{
    self, active_partitions, live_members, logs, produce_range, pull_totals, settle, start_member,
    wait_for, wait_healthy,
};
use common::{KillOnDrop, free_port, healthy, plays, post, serve_on_kafka};
use serde_json::{Value, json};
use sluice_connectors::kafka::tansu::TansuBroker;
use sluice_connectors::{KafkaConfig, KafkaTopics};
use sluice_engine::topic::{Partitioning, Record, TopicBackend};

const SERVICE_ID: &str = "cmd_";
const COMMAND_TOPIC: &str = "_sluice-cmd_-command_topic";
const PARTITIONS: u32 = 4;
const PLAYERS: u64 = 50;
const EVENTS: u64 = 5_000;

fn record(i: u64) -> (Partitioning, Record) {
    plays::record(i, PLAYERS)
}

fn expected(n: u64) -> BTreeMap<String, (i64, i64)> {
    plays::expected(n, PLAYERS)
}

/// A scratch directory with an empty queries folder: the servers start
/// knowing nothing but what the command topic holds.
fn work_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sluice-command-topic-{test}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("queries")).expect("work dir");
    dir
}

fn start(bootstrap: &str, work: &Path, name: &str, port: u16) -> KillOnDrop {
    let extra = ["--checkpoint-interval".as_ref(), "500".as_ref()];
    // A restarted member appends to its log, so the first run's stays.
    let log = work.join(format!("{name}.log"));
    let earlier = std::fs::read_to_string(&log).unwrap_or_default();
    let child = start_member(bootstrap, work, name, port, SERVICE_ID, &extra);
    if !earlier.is_empty() {
        let _ = std::fs::write(work.join(format!("{name}.earlier.log")), earlier);
    }
    child
}

/// The entities `POST /ksql` answers with for `sql`.
fn ksql(port: u16, sql: &str) -> Value {
    cluster::ksql(port, sql).unwrap_or_else(|e| panic!("{e}"))
}

/// The names a `SHOW STREAMS` or `SHOW TABLES` lists.
fn names(port: u16, what: &str) -> Vec<String> {
    let answer = ksql(port, &format!("SHOW {what};"));
    let key = what.to_lowercase();
    let mut names: Vec<String> = answer[0][&key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str().map(String::from))
        .filter(|n| n != "KSQL_PROCESSING_LOG")
        .collect();
    names.sort();
    names
}

/// (id, state) of the queries `SHOW QUERIES` lists.
fn queries(port: u16) -> Vec<(String, String)> {
    let answer = ksql(port, "SHOW QUERIES;");
    let mut queries: Vec<(String, String)> = answer[0]["queries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|q| Some((q["id"].as_str()?.into(), q["state"].as_str()?.into())))
        .collect();
    queries.sort();
    queries
}

/// The table through a pull query on `port`, or why not.
fn pull(port: u16, table: &str) -> Result<BTreeMap<String, (i64, i64)>, String> {
    pull_totals(port, &format!("SELECT * FROM {table};"))
}

/// Input partitions of `query` each live member owns, by `host:port`.
fn ownership(port: u16, query: &str) -> BTreeMap<String, Vec<i64>> {
    live_members(port)
        .into_iter()
        .map(|(host, member)| {
            let partitions = active_partitions(&member).remove(query).unwrap_or_default();
            (host, partitions)
        })
        .collect()
}

/// Commands in the command topic.
fn commands(topics: &KafkaTopics) -> u64 {
    topics.consumer(COMMAND_TOPIC).expect("command topic").lag()
}

/// Waits until the pull of `table` on `port` equals `want`.
fn pulls_exactly(port: u16, table: &str, want: &BTreeMap<String, (i64, i64)>, work: &Path) {
    let last = settle(Duration::from_secs(90), want, || pull(port, table));
    if last.as_ref().is_ok_and(|t| t == want) {
        return;
    }
    panic!(
        "pull of {table} on {port}: {:?} rows, want {} rows\n{}",
        last.map(|t| t.into_iter().take(5).collect::<Vec<_>>()),
        want.len(),
        logs(work)
    );
}

#[test]
fn the_catalog_is_shared_through_the_command_topic() {
    let broker = TansuBroker::start().expect("a Tansu broker");
    let bootstrap = broker.bootstrap_servers();
    let topics =
        Arc::new(KafkaTopics::connect(KafkaConfig::new(bootstrap.clone())).expect("connected"));
    let work = work_dir("shared");
    let (port_a, port_b) = (free_port(), free_port());
    let _a = start(&bootstrap, &work, "a", port_a);
    let mut b = start(&bootstrap, &work, "b", port_b);
    for port in [port_a, port_b] {
        wait_for("the servers", &work, Duration::from_secs(60), || {
            healthy(port)
        });
    }
    assert_eq!(commands(&topics), 0, "the servers started with no queries");

    // Sent to a: the stream (and its topic) and a table over it.
    let created = ksql(
        port_a,
        &format!(
            "CREATE STREAM plays (player STRING KEY, points INT) \
             WITH (kafka_topic='plays', value_format='JSON', partitions={PARTITIONS});"
        ),
    );
    assert_eq!(
        created[0]["commandStatus"]["status"], "SUCCESS",
        "{created}"
    );
    assert_eq!(created[0]["commandSequenceNumber"], 0, "{created}");
    let started = ksql(
        port_a,
        "CREATE TABLE totals AS SELECT player, COUNT(*) AS games, SUM(points) AS points \
         FROM plays GROUP BY player;",
    );
    assert_eq!(started[0]["commandSequenceNumber"], 1, "{started}");
    let query_id = started[0]["commandStatus"]["queryId"]
        .as_str()
        .unwrap_or_else(|| panic!("no query id: {started}"))
        .to_string();
    assert_eq!(commands(&topics), 2);

    // A request naming the command's offset sees its effect on b at once.
    let after = post(
        port_b,
        "/ksql",
        &json!({ "ksql": "SHOW TABLES;", "commandSequenceNumber": 1 }).to_string(),
    )
    .expect("an answer");
    let after: Value = serde_json::from_str(&after).expect("json");
    assert_eq!(after[0]["tables"][0]["name"], "TOTALS", "{after}");

    // b learns them within seconds, with the same query id.
    wait_for(
        "b to learn the catalog",
        &work,
        Duration::from_secs(10),
        || {
            names(port_b, "STREAMS") == ["PLAYS"]
                && names(port_b, "TABLES") == ["TOTALS"]
                && queries(port_b) == [(query_id.clone(), "RUNNING".to_string())]
        },
    );
    assert_eq!(queries(port_a), queries(port_b));

    // Both run the query, each on some of its partitions, and the table
    // is whole and exact on b.
    let (host_a, host_b) = (format!("127.0.0.1:{port_a}"), format!("127.0.0.1:{port_b}"));
    wait_for(
        "both servers to own partitions of the query",
        &work,
        Duration::from_secs(60),
        || {
            let owned = ownership(port_a, &query_id);
            let (a, b) = (owned.get(&host_a), owned.get(&host_b));
            a.is_some_and(|p| !p.is_empty())
                && b.is_some_and(|p| !p.is_empty())
                && a.map_or(0, Vec::len) + b.map_or(0, Vec::len) == PARTITIONS as usize
        },
    );
    produce_range(&topics, "plays", 0..EVENTS, 1_000, Duration::ZERO, record);
    pulls_exactly(port_b, "TOTALS", &expected(EVENTS), &work);

    // Bad SQL sent to a is an error, and nothing reaches the topic.
    let before = commands(&topics);
    for bad in [
        "CREATE TABLE broken AS SELECT nope, COUNT(*) FROM missing GROUP BY nope;",
        "CREATE TABLE (;",
        "DROP STREAM missing;",
    ] {
        let answer = ksql(port_a, bad);
        assert_eq!(answer["@type"], "statement_error", "{bad}: {answer}");
    }
    assert_eq!(commands(&topics), before);

    // TERMINATE sent to b stops the query on a; DROP sent to b drops the
    // table on a.
    let terminated = ksql(port_b, &format!("TERMINATE {query_id};"));
    assert_eq!(
        terminated[0]["commandStatus"]["status"], "SUCCESS",
        "{terminated}"
    );
    wait_for(
        "a to stop the query",
        &work,
        Duration::from_secs(10),
        || queries(port_a).is_empty(),
    );
    let dropped = ksql(port_b, "DROP TABLE totals;");
    assert_eq!(
        dropped[0]["commandStatus"]["status"], "SUCCESS",
        "{dropped}"
    );
    wait_for(
        "a to drop the table",
        &work,
        Duration::from_secs(10),
        || names(port_a, "TABLES").is_empty(),
    );

    // Another table, then b is killed and started again: it comes back
    // with the catalog from the topic, query ids and all.
    let started = ksql(
        port_a,
        "CREATE TABLE best AS SELECT player, COUNT(*) AS games, MAX(points) AS top \
         FROM plays GROUP BY player;",
    );
    let best_id = started[0]["commandStatus"]["queryId"]
        .as_str()
        .unwrap_or_else(|| panic!("no query id: {started}"))
        .to_string();
    assert_ne!(best_id, query_id);
    wait_for("b to run it", &work, Duration::from_secs(10), || {
        queries(port_b) == [(best_id.clone(), "RUNNING".to_string())]
    });
    b.0.kill().expect("SIGKILL server b");
    let _ = b.0.wait();
    let _b = start(&bootstrap, &work, "b", port_b);
    wait_healthy(&work, "b", port_b);
    assert_eq!(names(port_b, "STREAMS"), ["PLAYS"]);
    assert_eq!(names(port_b, "TABLES"), ["BEST"]);
    assert_eq!(
        queries(port_b),
        [(best_id.clone(), "RUNNING".to_string())],
        "{}",
        logs(&work)
    );
    let mut best = BTreeMap::new();
    for i in 0..EVENTS {
        let (player, points) = plays::event(i, PLAYERS);
        let entry: &mut (i64, i64) = best.entry(player).or_insert((0, i64::MIN));
        entry.0 += 1;
        entry.1 = entry.1.max(points);
    }
    pulls_exactly(port_b, "BEST", &best, &work);
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn members_started_together_with_one_queries_folder_load_it_once() {
    let broker = TansuBroker::start().expect("a Tansu broker");
    let bootstrap = broker.bootstrap_servers();
    let topics = KafkaTopics::connect(KafkaConfig::new(bootstrap.clone())).expect("connected");
    let work = work_dir("folder");
    std::fs::write(
        work.join("queries").join("plays.sql"),
        format!(
            "CREATE STREAM plays (player STRING KEY, points INT) \
               WITH (kafka_topic='plays', value_format='JSON', partitions={PARTITIONS});
             CREATE STREAM big_plays (player STRING KEY, points INT) \
               WITH (kafka_topic='big_plays', value_format='JSON', partitions={PARTITIONS});
             INSERT INTO big_plays SELECT * FROM plays WHERE points > 50;
             CREATE TABLE totals AS SELECT player, COUNT(*) AS games FROM plays GROUP BY player;"
        ),
    )
    .expect("queries");
    let (port_a, port_b) = (free_port(), free_port());
    let _a = start(&bootstrap, &work, "a", port_a);
    let mut b = start(&bootstrap, &work, "b", port_b);
    for port in [port_a, port_b] {
        wait_for("the servers", &work, Duration::from_secs(60), || {
            healthy(port)
        });
    }
    let running = |id: &str| (id.to_string(), "RUNNING".to_string());
    let want = vec![running("CTAS_TOTALS_1"), running("INSERTQUERY_0")];
    for port in [port_a, port_b] {
        wait_for("both queries", &work, Duration::from_secs(10), || {
            queries(port) == want
        });
        assert_eq!(names(port, "STREAMS"), ["BIG_PLAYS", "PLAYS"]);
        assert_eq!(names(port, "TABLES"), ["TOTALS"]);
    }
    // Each member sent each statement at most once; one copy applied.
    let sent = commands(&topics);
    assert!((4..=8).contains(&sent), "{sent} commands");
    // A restart with the same folder sends nothing: all of it is there.
    b.0.kill().expect("SIGKILL server b");
    let _ = b.0.wait();
    let _b = start(&bootstrap, &work, "b", port_b);
    wait_healthy(&work, "b", port_b);
    assert_eq!(queries(port_b), want);
    assert_eq!(commands(&topics), sent);
    let _ = std::fs::remove_dir_all(&work);
}

/// Milliseconds each of `n` `CREATE STREAM` statements takes over REST on
/// `port`, sorted.
fn ddl_latencies(port: u16, n: usize, prefix: &str) -> Vec<f64> {
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let began = Instant::now();
        let answer = ksql(
            port,
            &format!(
                "CREATE STREAM {prefix}{i} (k STRING KEY, v INT) \
                 WITH (kafka_topic='{prefix}{i}', value_format='JSON', partitions=1);"
            ),
        );
        took.push(began.elapsed().as_secs_f64() * 1_000.0);
        assert_eq!(answer[0]["commandStatus"]["status"], "SUCCESS", "{answer}");
    }
    took.sort_by(f64::total_cmp);
    took
}

#[test]
#[ignore = "a measurement, not a check: run with --ignored --nocapture"]
fn latency_of_a_statement_through_the_command_topic() {
    const N: usize = 100;
    let broker = TansuBroker::start().expect("a Tansu broker");
    let bootstrap = broker.bootstrap_servers();
    let work = work_dir("latency");
    let standalone_port = free_port();
    let standalone = serve_on_kafka(
        &bootstrap,
        &work,
        standalone_port,
        &["--service-id".as_ref(), "alone_".as_ref()],
        &work.join("alone.log"),
    );
    let member_port = free_port();
    let _member = start(&bootstrap, &work, "a", member_port);
    for port in [standalone_port, member_port] {
        wait_for("the servers", &work, Duration::from_secs(60), || {
            healthy(port)
        });
    }
    for (what, port, prefix) in [
        ("standalone", standalone_port, "alone"),
        ("cluster member", member_port, "member"),
    ] {
        let took = ddl_latencies(port, N, prefix);
        eprintln!(
            "{what}: CREATE STREAM over REST, {N} statements: median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
            took[N / 2],
            took[N * 9 / 10],
            took[N - 1]
        );
    }
    drop(standalone);
    let _ = std::fs::remove_dir_all(&work);
}
