//! What the tests of several `sluice serve` members sharing one service
//! id share: starting a member on a shared state directory, the tails of
//! the members' logs for a failure message, waiting with those logs, what
//! `/clusterStatus` says each live member owns or materializes, pull and
//! `/ksql` requests, and the records-in metric summed over members.
//!
//! Members are named `a` and `b`; each logs to `{name}.log` in the test's
//! work directory.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_connectors::KafkaTopics;
use sluice_engine::topic::{Partitioning, Record, TopicBackend};

use super::{KillOnDrop, get, healthy, post, serve_on_kafka};

/// Lines of each member's log a failure message shows.
const LOG_TAIL: usize = 25;

/// Starts member `name` of the cluster `service` on `port`: its state in
/// `work/shared` (shared with the other members), its log in
/// `work/{name}.log`, and `extra` flags after those.
pub fn start_member(
    bootstrap: &str,
    work: &Path,
    name: &str,
    port: u16,
    service: &str,
    extra: &[&OsStr],
) -> KillOnDrop {
    let shared = work.join("shared");
    let mut flags: Vec<&OsStr> = vec![
        "--service-id".as_ref(),
        service.as_ref(),
        "--shared-state-dir".as_ref(),
        shared.as_os_str(),
    ];
    flags.extend_from_slice(extra);
    serve_on_kafka(
        bootstrap,
        work,
        port,
        &flags,
        &work.join(format!("{name}.log")),
    )
}

/// The last lines of members a's and b's logs.
pub fn logs(work: &Path) -> String {
    let mut out = String::new();
    for name in ["a", "b"] {
        let text = std::fs::read_to_string(work.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
        out += &format!("--- server {name}\n{}\n", tail.join("\n"));
    }
    out
}

/// Polls `done` until it holds; fails with the members' logs after `limit`.
pub fn wait_for(what: &str, work: &Path, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            logs(work)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits up to a minute for member `name` on `port` to answer its health
/// check.
pub fn wait_healthy(work: &Path, name: &str, port: u16) {
    wait_for(
        &format!("server {name}"),
        work,
        Duration::from_secs(60),
        || healthy(port),
    );
}

/// Starts members `a` and `b` on free ports with `start(name, port)`, each
/// healthy before the next starts (so `a` joins the groups first); returns
/// them with their ports.
pub fn start_two(
    work: &Path,
    start: impl Fn(&str, u16) -> KillOnDrop,
) -> (KillOnDrop, KillOnDrop, u16, u16) {
    let (port_a, port_b) = (super::free_port(), super::free_port());
    let a = start("a", port_a);
    wait_healthy(work, "a", port_a);
    let b = start("b", port_b);
    wait_healthy(work, "b", port_b);
    (a, b, port_a, port_b)
}

/// Events a SIGKILL test produces: `SLUICE_SCALE_EVENTS`, else 200,000.
pub fn scale_events() -> u64 {
    std::env::var("SLUICE_SCALE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

/// Produces `record(i)` for every `i` in `range` to `topic`, `chunk` at a
/// time, sleeping `pause` after each chunk (a steady stream rather than
/// one burst).
pub fn produce_range(
    topics: &KafkaTopics,
    topic: &str,
    range: std::ops::Range<u64>,
    chunk: u64,
    pause: Duration,
    record: impl Fn(u64) -> (Partitioning, Record),
) {
    let mut i = range.start;
    while i < range.end {
        let end = (i + chunk).min(range.end);
        topics
            .produce(topic, (i..end).map(&record).collect())
            .expect("produce");
        i = end;
        std::thread::sleep(pause);
    }
}

/// [`produce_range`] on a thread of its own, for events that keep coming
/// while the test does something else.
pub fn spawn_producer(
    topics: std::sync::Arc<KafkaTopics>,
    topic: &'static str,
    range: std::ops::Range<u64>,
    chunk: u64,
    pause: Duration,
    record: fn(u64) -> (Partitioning, Record),
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || produce_range(&topics, topic, range, chunk, pause, record))
}

/// Asks `pull` until it answers `want` or `limit` passes; its last answer.
pub fn settle<T: PartialEq>(
    limit: Duration,
    want: &T,
    mut pull: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let mut last = Err("never asked".to_string());
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        last = pull();
        if last.as_ref().is_ok_and(|t| t == want) {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    last
}

/// The live members in `/clusterStatus` on `port`, by `host:port`; none
/// when the member does not answer (yet).
pub fn live_members(port: u16) -> BTreeMap<String, Value> {
    let Some(answer) = get(port, "/clusterStatus") else {
        return BTreeMap::new();
    };
    let Some((_, body)) = answer.split_once("\r\n\r\n") else {
        return BTreeMap::new();
    };
    let Ok(mut status) = serde_json::from_str::<Value>(body) else {
        return BTreeMap::new();
    };
    let Some(members) = status["clusterStatus"].as_object_mut() else {
        return BTreeMap::new();
    };
    std::mem::take(members)
        .into_iter()
        .filter(|(_, member)| member["hostAlive"] == true)
        .collect()
}

/// The active partitions of each query (or stage) a member runs, sorted,
/// by query id.
pub fn active_partitions(member: &Value) -> BTreeMap<String, Vec<i64>> {
    let mut queries = BTreeMap::new();
    for (id, q) in member["activeStandbyPerQuery"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let mut partitions: Vec<i64> = q["activePartitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["partition"].as_i64())
            .collect();
        partitions.sort_unstable();
        queries.insert(id.clone(), partitions);
    }
    queries
}

/// Per live member that materializes `source` for pull queries: its
/// partitions, sorted, and whether none of them is still restoring.
pub fn materialized(port: u16, source: &str) -> BTreeMap<String, (Vec<i64>, bool)> {
    let ids = |v: &Value| -> Option<Vec<i64>> {
        let mut p: Vec<i64> = v.as_array()?.iter().filter_map(Value::as_i64).collect();
        p.sort_unstable();
        Some(p)
    };
    live_members(port)
        .into_iter()
        .filter_map(|(host, member)| {
            let held = &member["materialized"][source];
            let partitions = ids(&held["partitions"])?;
            let ready = ids(&held["restoring"]).unwrap_or_default().is_empty();
            Some((host, (partitions, ready)))
        })
        .collect()
}

/// The rows of a pull query's answer on `port`, or why there are none.
pub fn pull_rows(port: u16, sql: &str) -> Result<Vec<Vec<Value>>, String> {
    let body = post(port, "/query", &json!({ "ksql": sql }).to_string()).ok_or("no answer")?;
    let answer: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    let Some(items) = answer.as_array() else {
        return Err(format!("not an array: {body}"));
    };
    Ok(items
        .iter()
        .filter_map(|r| r["row"]["columns"].as_array().cloned())
        .collect())
}

/// A pull query's rows of (string key, two integers), by key.
pub fn pull_totals(port: u16, sql: &str) -> Result<BTreeMap<String, (i64, i64)>, String> {
    let mut table = BTreeMap::new();
    for row in pull_rows(port, sql)? {
        let key = row[0].as_str().ok_or(format!("column 0 of {row:?}"))?;
        let first = row[1].as_i64().ok_or(format!("column 1 of {row:?}"))?;
        let second = row[2].as_i64().ok_or(format!("column 2 of {row:?}"))?;
        table.insert(key.to_string(), (first, second));
    }
    Ok(table)
}

/// The first rows where `got` differs from `want`.
pub fn difference(
    want: &BTreeMap<String, (i64, i64)>,
    got: &BTreeMap<String, (i64, i64)>,
) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> = want.keys().chain(got.keys()).collect();
    keys.into_iter()
        .filter(|k| want.get(*k) != got.get(*k))
        .take(5)
        .map(|k| format!("{k}: expected {:?}, got {:?}", want.get(k), got.get(k)))
        .collect()
}

/// Fails, naming `what` and with the members' logs, unless `got` is `want`.
pub fn assert_table(
    want: &BTreeMap<String, (i64, i64)>,
    got: &BTreeMap<String, (i64, i64)>,
    what: &str,
    work: &Path,
) {
    assert_eq!(
        difference(want, got),
        Vec::<String>::new(),
        "{what} ({} rows of {})\n{}",
        got.len(),
        want.len(),
        logs(work)
    );
}

/// The entities `POST /ksql` answers with for `sql` on `port`, or the raw
/// answer when it is not JSON.
pub fn ksql(port: u16, sql: &str) -> Result<Value, String> {
    let body = post(port, "/ksql", &json!({ "ksql": sql }).to_string())
        .ok_or_else(|| format!("no answer from {port} to {sql}"))?;
    serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
}

/// Records the queries whose id starts with `query_prefix` have read on
/// the members on `ports`, summed.
pub fn records_in(ports: &[u16], query_prefix: &str) -> u64 {
    let prefix = format!("sluice_query_records_in_total{{query_id=\"{query_prefix}");
    ports
        .iter()
        .filter_map(|p| get(*p, "/metrics"))
        .flat_map(|m| {
            m.lines()
                .filter(|l| l.starts_with(&prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// An end-to-end throughput measurement of one and then two members over
/// a fresh broker each time: produce every event of the `plays` topic and
/// wait until the members' query (ids starting `query_prefix`) has read
/// `done_at` records.
pub struct Throughput<'a> {
    pub partitions: u32,
    pub events: u64,
    pub record: fn(u64) -> (Partitioning, Record),
    pub work_dir: &'a dyn Fn() -> std::path::PathBuf,
    pub start: &'a dyn Fn(&str, &Path, &str, u16) -> KillOnDrop,
    /// Whether member `host` owns its `share` of every stage, as the
    /// member on `port` sees it.
    pub owns_share: &'a dyn Fn(u16, &str, usize) -> bool,
    pub query_prefix: &'a str,
    pub done_at: u64,
    pub limit: Duration,
    /// Says what "end to end" went through, after those words.
    pub through: &'a str,
}

impl Throughput<'_> {
    /// Runs the measurement and prints its numbers.
    pub fn run(&self) {
        let events = self.events;
        for servers in [1usize, 2] {
            let broker =
                sluice_connectors::kafka::tansu::TansuBroker::start().expect("a Tansu broker");
            let bootstrap = broker.bootstrap_servers();
            let topics =
                KafkaTopics::connect(sluice_connectors::KafkaConfig::new(bootstrap.clone()))
                    .expect("connected");
            topics
                .create_topic("plays", self.partitions, 1)
                .expect("input");
            let work = (self.work_dir)();
            let ports: Vec<u16> = (0..servers).map(|_| super::free_port()).collect();
            let names = ["a", "b"];
            let mut running = Vec::new();
            for (i, port) in ports.iter().enumerate() {
                running.push((self.start)(&bootstrap, &work, names[i], *port));
                wait_for("a server", &work, Duration::from_secs(60), || {
                    healthy(*port)
                });
            }
            let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
            let share = self.partitions as usize / servers;
            wait_for(
                "the partitions to be split",
                &work,
                Duration::from_secs(60),
                || hosts.iter().all(|h| (self.owns_share)(ports[0], h, share)),
            );
            let began = Instant::now();
            produce_range(
                &topics,
                "plays",
                0..events,
                50_000,
                Duration::ZERO,
                self.record,
            );
            let produced = began.elapsed();
            wait_for("every event", &work, self.limit, || {
                records_in(&ports, self.query_prefix) >= self.done_at
            });
            let took = began.elapsed();
            eprintln!(
                "{servers} server(s): {events} events in {:.2} s = {:.0} events/s end to end{} (producing them took {:.2} s)",
                took.as_secs_f64(),
                events as f64 / took.as_secs_f64(),
                self.through,
                produced.as_secs_f64()
            );
            drop(running);
            let _ = std::fs::remove_dir_all(&work);
        }
    }
}
