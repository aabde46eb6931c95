use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use sluice_engine::topic::TopicBackend;

use super::*;
use crate::EmbeddedTopics;

const HOUR_MS: i64 = 3_600_000;

/// Events of the first simulated hour.
fn first_hour(name: &str, rate: f64, seed: u64) -> Vec<Event> {
    let mut s = scenario(name, rate, seed, 0).expect("known scenario");
    let mut events = Vec::new();
    loop {
        let e = s.next_event();
        if e.timestamp >= HOUR_MS {
            return events;
        }
        events.push(e);
    }
}

#[test]
fn scenarios_are_seeded_ordered_and_near_their_rate() {
    for name in SCENARIOS {
        let events = first_hour(name, 50.0, 42);
        assert_eq!(events, first_hour(name, 50.0, 42), "{name}: same seed");
        assert_ne!(events, first_hour(name, 50.0, 43), "{name}: other seed");
        assert!(
            events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp),
            "{name}: event time never goes back"
        );
        // The first minutes ramp up (matches and sessions start empty), so
        // measure the rate over the last half hour.
        let late = events.iter().filter(|e| e.timestamp >= HOUR_MS / 2).count() as f64;
        let rate = late / 1800.0;
        assert!(
            (35.0..=70.0).contains(&rate),
            "{name}: {rate} events/s for 50 asked"
        );
    }
}

#[test]
fn every_match_is_complete_and_consistent() {
    let mut by_match: HashMap<String, Vec<Event>> = HashMap::new();
    for e in first_hour("matches", 20.0, 7) {
        by_match.entry(e.key.clone()).or_default().push(e);
    }
    // Matches still running at the end of the hour are cut off.
    let finished: Vec<_> = by_match
        .values()
        .filter(|events| {
            events
                .last()
                .is_some_and(|e| e.value["event_type"] == "MATCH_ENDED")
        })
        .collect();
    assert!(finished.len() > 500, "{} finished matches", finished.len());
    for events in finished {
        assert_eq!(events[0].value["event_type"], "MATCH_CREATED");
        let messages = events
            .iter()
            .filter(|e| {
                matches!(
                    e.value["event_type"].as_str(),
                    Some("MESSAGE_SENT" | "ROBOT_RESPONSE")
                )
            })
            .count();
        assert!((2..=40).contains(&messages), "{messages} messages");
        let end = &events[events.len() - 1].value;
        let players = end["players"].as_array().expect("players");
        let robots = players.iter().filter(|p| p["kind"] == "ROBOT").count();
        assert_eq!(robots, 1);
        let joined = events
            .iter()
            .filter(|e| e.value["event_type"] == "PLAYER_JOINED")
            .count();
        assert_eq!(joined, players.len());
        assert!(matches!(
            end["winner"].as_str(),
            Some("HUMANS" | "ROBOT") | None
        ));
        for e in events
            .iter()
            .filter(|e| e.value["event_type"] == "ROBOT_RESPONSE")
        {
            assert!(e.value["latency_ms"].as_i64().is_some_and(|l| l >= 80));
            assert_eq!(e.value["model"], end["model"]);
        }
    }
}

#[test]
fn every_agent_task_attempt_is_assigned_then_finished_once() {
    let mut attempts: HashMap<String, Vec<String>> = HashMap::new();
    let mut sessions: HashMap<String, Vec<String>> = HashMap::new();
    for e in first_hour("agents", 50.0, 3) {
        let kind = e.value["event_type"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match e.topic {
            "agent.tasks.manager" | "agent.tasks.worker" => {
                attempts.entry(e.key).or_default().push(kind)
            }
            "session.events" => sessions.entry(e.key).or_default().push(kind),
            _ => {}
        }
    }
    let complete = attempts.values().filter(|k| k.len() == 2).count();
    assert!(complete > 100, "{complete} finished attempts");
    for kinds in attempts.values() {
        assert_eq!(kinds[0], "TASK_ASSIGNED");
        if let Some(outcome) = kinds.get(1) {
            assert!(outcome == "TASK_COMPLETED" || outcome == "TASK_FAILED");
        }
        assert!(kinds.len() <= 2);
    }
    let ended = sessions
        .values()
        .filter(|k| {
            k.last()
                .is_some_and(|k| k == "SESSION_COMPLETED" || k == "SESSION_FAILED")
        })
        .count();
    assert!(ended > 10, "{ended} sessions ended");
    assert!(sessions.values().all(|k| k[0] == "SESSION_CREATED"));
}

#[test]
fn run_writes_backfill_at_once_and_corrupts_the_configured_share() {
    let topics = EmbeddedTopics::new();
    let mut s = scenario("matches", 200.0, 1, now_ms() - 600_000).expect("scenario");
    let config = GeneratorConfig {
        duration: Some(Duration::from_millis(300)),
        backfill: Duration::from_secs(600),
        malformed_share: 0.1,
        seed: 1,
    };
    let mut reports = 0;
    let stats = run_generator(
        &topics,
        s.as_mut(),
        &config,
        &AtomicBool::new(false),
        &mut |_| reports += 1,
    )
    .expect("run");
    // Ten minutes of history at 200/s ramping up: tens of thousands.
    assert!(stats.events > 30_000, "{} events", stats.events);
    let share = stats.malformed as f64 / stats.events as f64;
    assert!((0.08..0.12).contains(&share), "malformed share {share}");
    assert!(reports >= 1);
    let mut consumer = topics.consumer("match.events").expect("topic created");
    let mut read = 0;
    loop {
        let records = consumer.poll(10_000).expect("poll");
        if records.is_empty() {
            break;
        }
        read += records.len() as u64;
    }
    assert_eq!(read, stats.events);
    assert_eq!(
        topics.describe_topic("match.events").map(|d| d.partitions),
        Some(3)
    );
}
