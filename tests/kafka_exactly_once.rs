//! Exactly-once projections through crashes, on a real broker: the
//! `sluice` binary serves a windowed and a non-windowed aggregate over
//! 1,000,000 match events on a 6-partition Tansu topic, is killed with
//! SIGKILL at three random points and restarted from its state directory
//! each time. Once the input is consumed, the latest row of every key of
//! both sink topics (what the projections serve) must equal what this test
//! computes from the events itself: nothing lost, nothing counted twice.
//!
//! `SLUICE_EO_EVENTS` sets a smaller event count for local iteration,
//! `SLUICE_EO_KILLS` another number of kills; `SLUICE_EO_SEED` replays a
//! run's kill points.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sluice_connectors::kafka::tansu::TansuBroker;
use sluice_connectors::{KafkaConfig, KafkaTopics};
use sluice_engine::topic::{Partitioning, Record, TopicBackend, TopicConsumer};

use common::{KillOnDrop, free_port, serve_on_kafka, work_dir_with_queries};

const PARTITIONS: u32 = 6;
const PLAYERS: u64 = 1_000;
const WINDOW_MS: i64 = 60_000;
const BASE_TIME: i64 = 1_700_000_000_000;

const QUERIES: &str = "
CREATE STREAM matches (match_id STRING KEY, player STRING, points INT)
  WITH (kafka_topic='matches', value_format='JSON');
CREATE TABLE per_minute AS
  SELECT player, COUNT(*) AS games, SUM(points) AS points
  FROM matches WINDOW TUMBLING (SIZE 60 SECONDS) GROUP BY player EMIT CHANGES;
CREATE TABLE totals AS
  SELECT player, COUNT(*) AS games, SUM(points) AS points
  FROM matches GROUP BY player;
";

/// Event `i`: which player scored how much, when.
fn event(i: u64) -> (String, i64, i64) {
    let player = format!("p{}", (i.wrapping_mul(7_919)) % PLAYERS);
    let points = ((i.wrapping_mul(2_654_435_761) >> 7) % 100) as i64;
    // Ten milliseconds apart, a little out of order.
    let time = BASE_TIME + (i as i64) * 10 + ((i % 7) as i64) * 3;
    (player, points, time)
}

fn record(i: u64) -> (Partitioning, Record) {
    let (player, points, time) = event(i);
    (
        Partitioning::ByKey,
        Record {
            key: Some(Bytes::from(format!("m{}", i / 10))),
            value: Some(Bytes::from(format!(
                r#"{{"PLAYER":"{player}","POINTS":{points}}}"#
            ))),
            timestamp: time,
            headers: vec![],
        },
    )
}

/// (games, points) per key.
type Counts = HashMap<Vec<u8>, (i64, i64)>;

/// What the projections must hold once every event is in.
fn expected(events: u64) -> (Counts, Counts) {
    let mut totals = Counts::new();
    let mut windows = Counts::new();
    for i in 0..events {
        let (player, points, time) = event(i);
        let total = totals.entry(player.clone().into_bytes()).or_default();
        total.0 += 1;
        total.1 += points;
        // A windowed key is the key then the window start, 8 bytes BE.
        let start = time - time.rem_euclid(WINDOW_MS);
        let mut key = player.into_bytes();
        key.extend_from_slice(&start.to_be_bytes());
        let window = windows.entry(key).or_default();
        window.0 += 1;
        window.1 += points;
    }
    (totals, windows)
}

/// A small deterministic generator for the kill points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.next() % (to - from))
    }
}

/// The latest value of every key of a sink topic, read as it grows.
struct Projection {
    consumer: Box<dyn TopicConsumer>,
    latest: Counts,
    records: u64,
}

impl Projection {
    fn open(topics: &KafkaTopics, topic: &str) -> Self {
        Projection {
            consumer: topics.consumer(topic).expect("sink consumer"),
            latest: Counts::new(),
            records: 0,
        }
    }

    fn catch_up(&mut self) {
        loop {
            let batch = self.consumer.poll(50_000).expect("poll a sink topic");
            if batch.is_empty() {
                return;
            }
            for r in batch {
                self.records += 1;
                let key = r.record.key.map(|k| k.to_vec()).unwrap_or_default();
                let Some(value) = r.record.value else {
                    self.latest.remove(&key);
                    continue;
                };
                let row: serde_json::Value = serde_json::from_slice(&value).expect("a JSON row");
                let games = row["GAMES"].as_i64().expect("GAMES");
                let points = row["POINTS"].as_i64().expect("POINTS");
                self.latest.insert(key, (games, points));
            }
        }
    }

    fn games(&self) -> i64 {
        self.latest.values().map(|(g, _)| g).sum()
    }
}

fn start(bootstrap: &str, work: &Path, run: usize) -> KillOnDrop {
    let state = work.join("state");
    let extra = [
        "--service-id".as_ref(),
        "eo_".as_ref(),
        "--state-dir".as_ref(),
        state.as_os_str(),
        "--checkpoint-interval".as_ref(),
        "1000".as_ref(),
    ];
    let log = work.join(format!("sluice-{run}.log"));
    serve_on_kafka(bootstrap, work, free_port(), &extra, &log)
}

fn work_dir() -> PathBuf {
    work_dir_with_queries("eo", "matches.sql", QUERIES)
}

/// The last lines of every server log, for a failure message.
fn logs(work: &Path) -> String {
    let mut out = String::new();
    for run in 0..4 {
        let text =
            std::fs::read_to_string(work.join(format!("sluice-{run}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(15)..];
        out += &format!("--- run {run}\n{}\n", tail.join("\n"));
    }
    out
}

#[test]
fn projections_are_exact_after_three_sigkills() {
    let events: u64 = std::env::var("SLUICE_EO_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let seed = std::env::var("SLUICE_EO_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    eprintln!("{events} events, kill points from SLUICE_EO_SEED={seed}");
    let began = Instant::now();
    let mut rng = Rng(seed);

    let broker = TansuBroker::start().expect("a Tansu broker");
    let bootstrap = broker.bootstrap_servers();
    let topics =
        Arc::new(KafkaTopics::connect(KafkaConfig::new(bootstrap.clone())).expect("connected"));
    topics
        .create_topic("matches", PARTITIONS, 1)
        .expect("input topic");
    let work = work_dir();

    // The input arrives while the server runs, crashes and restarts.
    let producer = {
        let topics = topics.clone();
        std::thread::spawn(move || {
            let chunk = 20_000;
            let mut i = 0;
            while i < events {
                let end = (i + chunk).min(events);
                topics
                    .produce("matches", (i..end).map(record).collect())
                    .expect("produce events");
                i = end;
            }
        })
    };

    let kills: usize = std::env::var("SLUICE_EO_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // Kill points spread over the run: when the projection has counted a
    // random share of the events, plus a random delay (so the kill lands
    // anywhere between two checkpoints).
    let mut targets: Vec<i64> = (0..kills)
        .map(|_| (events as f64 * (0.05 + (rng.next() % 850) as f64 / 1_000.0)) as i64)
        .collect();
    targets.sort_unstable();
    let mut server = start(&bootstrap, &work, 0);
    // The server creates the sink topics as it runs the queries.
    let created = Instant::now();
    while ["TOTALS", "PER_MINUTE"]
        .iter()
        .any(|t| topics.describe_topic(t).is_none())
    {
        assert!(
            created.elapsed() < Duration::from_secs(60),
            "no sink topics\n{}",
            logs(&work)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut totals = Projection::open(&topics, "TOTALS");
    let mut windows = Projection::open(&topics, "PER_MINUTE");
    for (run, target) in (1..).zip(targets) {
        let mut last_progress = (Instant::now(), 0);
        loop {
            totals.catch_up();
            if totals.games() >= target {
                break;
            }
            if totals.records != last_progress.1 {
                last_progress = (Instant::now(), totals.records);
            }
            assert!(
                last_progress.0.elapsed() < Duration::from_secs(60),
                "no progress for a minute before kill {run}\n{}",
                logs(&work)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(rng.millis(0, 1_500));
        // Child::kill is SIGKILL: no shutdown, no last checkpoint.
        drop(server);
        eprintln!(
            "killed run {} at {:?}, {} events counted",
            run - 1,
            began.elapsed(),
            totals.games()
        );
        server = start(&bootstrap, &work, run);
    }
    producer.join().expect("producer");
    eprintln!("input produced by {:?}", began.elapsed());

    let (want_totals, want_windows) = expected(events);
    // Done when every event is counted; stuck (and compared, to show how)
    // when the sink topics get nothing new for a minute.
    let mut last_change = Instant::now();
    let mut last_records = 0;
    let mut last_report = Instant::now();
    loop {
        totals.catch_up();
        windows.catch_up();
        let (games, window_games) = (totals.games(), windows.games());
        if games == events as i64 && window_games == events as i64 {
            break;
        }
        if totals.records + windows.records != last_records {
            last_records = totals.records + windows.records;
            last_change = Instant::now();
        } else if last_change.elapsed() > Duration::from_secs(60) {
            eprintln!("no new output for a minute");
            break;
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "{:?}: TOTALS count {games}, PER_MINUTE count {window_games}",
                began.elapsed()
            );
            last_report = Instant::now();
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("sluice exited: {status}\n{}", logs(&work));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "consumed at {:?}: {} TOTALS and {} PER_MINUTE records",
        began.elapsed(),
        totals.records,
        windows.records
    );
    for (name, got, want) in [
        ("TOTALS", &totals.latest, &want_totals),
        ("PER_MINUTE", &windows.latest, &want_windows),
    ] {
        let wrong: Vec<_> = want
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(*v))
            .take(5)
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v, got.get(k)))
            .collect();
        assert!(
            wrong.is_empty() && got.len() == want.len(),
            "{name}: {} keys, {} expected; first differences (key, expected, got): {wrong:?}\n{}",
            got.len(),
            want.len(),
            logs(&work)
        );
    }
    // Each event makes one TOTALS update; more than that were re-emitted
    // after crashes, and far more would mean a restart from the beginning.
    assert!(
        totals.records >= events,
        "{} TOTALS updates",
        totals.records
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&work);
    eprintln!("done in {:?}", began.elapsed());
}
