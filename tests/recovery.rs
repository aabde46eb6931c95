//! A server that dies between checkpoints comes back from its state
//! directory with the same streams, tables and query ids, and its
//! projections end exactly where an uninterrupted run ends: the catalog is
//! replayed, each query restores its operator state and source offsets,
//! and what it re-emits replaces itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluice_connectors::EmbeddedTopics;
use sluice_engine::topic::{Partitioning, Record, TopicBackend};
use sluice_sql::{KsqlContext, StatementResult};

const SETUP: &str = "
    CREATE STREAM matches (player STRING, points INT, arena STRING)
      WITH (kafka_topic='matches', value_format='JSON', partitions=3);
    CREATE TABLE per_window AS
      SELECT player, COUNT(*) AS games, SUM(points) AS total, COLLECT_SET(arena) AS arenas
      FROM matches WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY player EMIT CHANGES;
    CREATE TABLE totals AS
      SELECT player, COUNT(*) AS games, SUM(points) AS total, TOPK(points, 3) AS best,
             LATEST_BY_OFFSET(arena) AS last_arena, COUNT_DISTINCT(arena) AS arenas
      FROM matches GROUP BY player;
    CREATE TABLE busy AS SELECT player, games FROM totals WHERE games > 20;
";

fn event(i: i64) -> (Partitioning, Record) {
    let player = format!("p{}", (i * 7) % 23);
    let points = (i * 13) % 50;
    let arena = ["north", "south", "east", "west"][(i % 4) as usize];
    let value = format!(r#"{{"PLAYER":"{player}","POINTS":{points},"ARENA":"{arena}"}}"#);
    (
        Partitioning::Explicit((i % 3) as i32),
        Record {
            key: None,
            value: Some(Bytes::from(value)),
            timestamp: 1_000 * i + (i % 5) * 300,
            headers: vec![],
        },
    )
}

fn produce(topics: &EmbeddedTopics, range: std::ops::Range<i64>) {
    topics
        .produce("matches", range.map(event).collect())
        .expect("produce");
}

/// The latest value of every key of a topic: what a projection shows.
fn projection(topics: &EmbeddedTopics, topic: &str) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
    topics
        .records(topic)
        .expect("sink topic")
        .into_iter()
        .map(|r| {
            (
                r.record.key.map(|k| k.to_vec()).unwrap_or_default(),
                r.record.value.map(|v| v.to_vec()),
            )
        })
        .collect()
}

fn state_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-recovery-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn durable(topics: &Arc<EmbeddedTopics>, dir: &Path) -> (KsqlContext, usize) {
    // Small polls, so a crash lands between many batches.
    let ctx = KsqlContext::with_backend(topics.clone(), 16);
    let replayed = ctx
        .open_state_dir(dir, Duration::from_secs(3_600))
        .expect("open state dir");
    (ctx, replayed)
}

fn query_ids(results: &[StatementResult]) -> Vec<String> {
    results
        .iter()
        .filter_map(|r| match r {
            StatementResult::QueryStarted { query_id, .. } => Some(query_id.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_crash_between_checkpoints_loses_nothing_and_counts_nothing_twice() {
    const EVENTS: i64 = 3_000;
    let sinks = ["PER_WINDOW", "TOTALS", "BUSY"];

    // The reference: one uninterrupted run.
    let reference = Arc::new(EmbeddedTopics::new());
    let ctx = KsqlContext::with_backend(reference.clone(), 16);
    let expected_ids = query_ids(&ctx.execute(SETUP).expect("setup"));
    produce(&reference, 0..EVENTS);
    ctx.runtime().run_until_idle();

    let topics = Arc::new(EmbeddedTopics::new());
    let dir = state_dir("crash");
    let (first, replayed) = durable(&topics, &dir);
    assert_eq!(replayed, 0);
    assert_eq!(
        query_ids(&first.execute(SETUP).expect("setup")),
        expected_ids
    );
    produce(&topics, 0..1_000);
    first.runtime().run_until_idle();
    first.runtime().checkpoint_all();
    // Progress after the checkpoint, then a crash: no final checkpoint.
    produce(&topics, 1_000..2_000);
    for _ in 0..20 {
        first.runtime().step();
    }
    drop(first);

    let (second, replayed) = durable(&topics, &dir);
    assert_eq!(replayed, 4, "four statements come back from the catalog");
    let running: Vec<String> = second
        .runtime()
        .states()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(running, expected_ids, "the queries keep their ids");
    // The startup scripts run again: what the catalog holds is skipped.
    let (_, skipped) = second.execute_new(SETUP).expect("startup script");
    assert_eq!(skipped, 4);
    second.runtime().run_until_idle();
    second.runtime().checkpoint_all();
    drop(second);

    // A clean restart with nothing new in between changes nothing, then
    // the rest of the input arrives.
    let (third, _) = durable(&topics, &dir);
    produce(&topics, 2_000..EVENTS);
    third.runtime().run_until_idle();

    for sink in sinks {
        let recovered = projection(&topics, sink);
        assert!(!recovered.is_empty(), "{sink} has rows");
        let expected = projection(&reference, sink);
        let differing = expected
            .iter()
            .filter(|(k, v)| recovered.get(*k) != Some(*v))
            .count();
        assert_eq!(
            (differing, recovered.len()),
            (0, expected.len()),
            "{sink}: rows that differ from an uninterrupted run, and row counts"
        );
    }
    // The restarts resumed from checkpoints rather than from the start:
    // TOTALS emits one update per event, and only the events between the
    // checkpoint and the crash (320 at most) were processed twice.
    let written = topics.records("TOTALS").expect("sink").len() as i64;
    assert!(
        (EVENTS..=EVENTS + 320).contains(&written),
        "{written} updates for {EVENTS} events"
    );
    // DESCRIBE EXTENDED says what a crash does.
    let described = third
        .execute("DESCRIBE totals EXTENDED;")
        .expect("describe");
    let Some(StatementResult::Description(d)) = described.first() else {
        panic!("a description: {described:?}");
    };
    let delivery = d.delivery.as_deref().expect("a delivery guarantee");
    assert!(delivery.contains("exactly-once"), "{delivery}");
    assert!(delivery.contains("at-least-once"), "{delivery}");

    // And independently of the reference run: every event counted once.
    let totals = projection(&topics, "TOTALS");
    let games: i64 = totals
        .values()
        .flatten()
        .map(|v| {
            let row: serde_json::Value = serde_json::from_slice(v).expect("json");
            row["GAMES"].as_i64().expect("GAMES")
        })
        .sum();
    assert_eq!(games, EVENTS);

    // Terminating a query forgets its checkpoints; the catalog remembers.
    let id = &expected_ids[2];
    third
        .execute(&format!("TERMINATE {id};"))
        .expect("terminate");
    assert!(!dir.join(id).exists());
    drop(third);
    let (fourth, replayed) = durable(&topics, &dir);
    assert_eq!(replayed, 5);
    assert_eq!(fourth.runtime().states().len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_checkpoint_of_another_plan_is_refused() {
    let topics = Arc::new(EmbeddedTopics::new());
    let dir = state_dir("mismatch");
    let (first, _) = durable(&topics, &dir);
    first.execute(SETUP).expect("setup");
    produce(&topics, 0..100);
    first.runtime().run_until_idle();
    first.runtime().checkpoint_all();
    drop(first);
    // The catalog now says the query is a different one.
    let catalog = dir.join(sluice_sql::context::CATALOG_FILE);
    let text = std::fs::read_to_string(&catalog).expect("catalog");
    std::fs::write(&catalog, text.replace("COUNT(*) AS games, SUM", "SUM")).expect("rewrite");
    let ctx = KsqlContext::with_backend(topics.clone(), 16);
    let err = ctx
        .open_state_dir(&dir, Duration::from_secs(3_600))
        .expect_err("mismatched checkpoint");
    assert!(err.to_string().contains("checkpoint"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
