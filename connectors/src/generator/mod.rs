//! Event generators for the two systems Sluice was built for: the
//! human-vs-robot match game ([`matches`]) and the AI-agent orchestrator
//! ([`agents`]).
//!
//! A [`Scenario`] is a seeded discrete-event simulation that yields
//! [`Event`]s in event-time order; [`run_generator`] paces it against the
//! wall clock (event time = the time it is produced, after an optional
//! backfill of history), corrupts a configurable share of records so the
//! processing log has something to show, and writes through any
//! [`TopicBackend`]: embedded topics or Kafka.

pub mod agents;
pub mod matches;
mod rng;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::Value;
use sluice_engine::error::Result;
use sluice_engine::topic::{Partitioning, Record, TopicBackend};

pub use rng::Rng;

/// One generated record: a JSON value keyed by a string, as the product's
/// `CREATE STREAM` statements in `queries/` declare them.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub topic: &'static str,
    pub key: String,
    pub value: Value,
    /// Event time, epoch milliseconds.
    pub timestamp: i64,
}

/// A simulation producing events in event-time order.
pub trait Scenario: Send {
    fn name(&self) -> &'static str;
    /// The topics written, with the partition counts they are created with
    /// when missing.
    fn topics(&self) -> &'static [(&'static str, u32)];
    /// The next event; never earlier than the one before.
    fn next_event(&mut self) -> Event;
}

/// Builds a scenario by name: `matches` or `agents`. `rate` is the target
/// events per second, which sets how often new matches or sessions start.
pub fn scenario(name: &str, rate: f64, seed: u64, start_ms: i64) -> Option<Box<dyn Scenario>> {
    match name {
        "matches" => Some(Box::new(matches::Matches::new(rate, seed, start_ms))),
        "agents" => Some(Box::new(agents::Agents::new(rate, seed, start_ms))),
        _ => None,
    }
}

/// Scenario names [`scenario`] knows.
pub const SCENARIOS: &[&str] = &["matches", "agents"];

/// How a generator run is paced and what it corrupts.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// Stop after this much wall-clock time; `None` runs until stopped.
    pub duration: Option<Duration>,
    /// Event time starts this far in the past; that history is written at
    /// once, then events follow the wall clock.
    pub backfill: Duration,
    /// Share of records (0..1) replaced by malformed ones.
    pub malformed_share: f64,
    pub seed: u64,
}

/// What a run has written so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeneratorStats {
    pub events: u64,
    pub malformed: u64,
    pub per_topic: BTreeMap<&'static str, u64>,
    /// Event time of the newest record written.
    pub event_time_ms: i64,
    pub elapsed: Duration,
}

/// Records written per `produce` call.
const PRODUCE_BATCH: usize = 5_000;

/// How long the pacing loop sleeps once it has caught up with the clock.
const TICK: Duration = Duration::from_millis(20);

/// Creates the scenario's topics that do not exist yet.
pub fn create_topics(backend: &dyn TopicBackend, scenario: &dyn Scenario) -> Result<()> {
    for (topic, partitions) in scenario.topics() {
        if backend.describe_topic(topic).is_none() {
            match backend.create_topic(topic, *partitions, 1) {
                // Someone else (a CREATE STREAM) was faster: fine.
                Ok(()) | Err(sluice_engine::error::EngineError::TopicExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Runs `scenario` into `backend` until the configured duration passes or
/// `stop` is set; calls `progress` about once a second.
pub fn run_generator(
    backend: &dyn TopicBackend,
    scenario: &mut dyn Scenario,
    config: &GeneratorConfig,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(&GeneratorStats),
) -> Result<GeneratorStats> {
    create_topics(backend, scenario)?;
    let started = Instant::now();
    let wall_start_ms = now_ms();
    let mut corrupt = Rng::new(config.seed ^ 0xBAD_DA7A);
    let mut stats = GeneratorStats::default();
    let mut last_report = Instant::now();
    let mut pending: Option<Event> = None;
    let mut batches: BTreeMap<&'static str, Vec<(Partitioning, Record)>> = BTreeMap::new();
    loop {
        let elapsed = started.elapsed();
        // The backfill is written whole before the duration counts, so a
        // short run still has all of its history; a stop interrupts it.
        let backfilled = pending
            .as_ref()
            .is_some_and(|e| e.timestamp > wall_start_ms);
        let finished = stop.load(AtomicOrdering::Relaxed)
            || (backfilled && config.duration.is_some_and(|d| elapsed >= d));
        // Event time runs up to the wall clock; the scenario started
        // `backfill` earlier, so that history is written at once.
        let horizon = wall_start_ms + elapsed.as_millis() as i64;
        let mut taken = 0;
        while !finished && taken < PRODUCE_BATCH * 4 {
            let event = pending.take().unwrap_or_else(|| scenario.next_event());
            if event.timestamp > horizon {
                pending = Some(event);
                break;
            }
            taken += 1;
            let malformed = corrupt.chance(config.malformed_share);
            let value = if malformed {
                stats.malformed += 1;
                malform(&event.value, &mut corrupt)
            } else {
                serde_json::to_vec(&event.value).unwrap_or_default()
            };
            stats.events += 1;
            *stats.per_topic.entry(event.topic).or_default() += 1;
            stats.event_time_ms = event.timestamp;
            batches.entry(event.topic).or_default().push((
                Partitioning::ByKey,
                Record {
                    key: Some(Bytes::from(event.key.into_bytes())),
                    value: Some(Bytes::from(value)),
                    timestamp: event.timestamp,
                    headers: Vec::new(),
                },
            ));
            if batches
                .get(event.topic)
                .is_some_and(|b| b.len() >= PRODUCE_BATCH)
            {
                flush(backend, &mut batches)?;
            }
        }
        flush(backend, &mut batches)?;
        stats.elapsed = started.elapsed();
        if finished {
            progress(&stats);
            return Ok(stats);
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            progress(&stats);
            last_report = Instant::now();
        }
        if taken < PRODUCE_BATCH * 4 {
            std::thread::sleep(TICK);
        }
    }
}

fn flush(
    backend: &dyn TopicBackend,
    batches: &mut BTreeMap<&'static str, Vec<(Partitioning, Record)>>,
) -> Result<()> {
    for (topic, records) in batches.iter_mut() {
        if !records.is_empty() {
            backend.produce(topic, std::mem::take(records))?;
        }
    }
    Ok(())
}

/// A broken version of a record, of the kinds real producers emit: cut
/// off mid-write, a field of the wrong type, or not JSON at all.
fn malform(value: &Value, rng: &mut Rng) -> Vec<u8> {
    let json = serde_json::to_vec(value).unwrap_or_default();
    match rng.range(0, 2) {
        0 => json[..json.len() / 2].to_vec(),
        1 => {
            let mut broken = value.clone();
            if let Some(object) = broken.as_object_mut() {
                object.insert("event_ts".into(), Value::String("yesterday".into()));
            }
            serde_json::to_vec(&broken).unwrap_or_default()
        }
        _ => b"<html>502 Bad Gateway</html>".to_vec(),
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Events scheduled for later, popped in (time, insertion) order so that
/// equal timestamps keep the order a simulation scheduled them in.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    heap: BinaryHeap<Scheduled>,
    sequence: u64,
}

#[derive(Debug)]
struct Scheduled {
    at: i64,
    sequence: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Reversed: BinaryHeap is a max-heap and the earliest must come first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.sequence).cmp(&(self.at, self.sequence))
    }
}

impl Timeline {
    pub fn schedule(&mut self, event: Event) {
        self.sequence += 1;
        self.heap.push(Scheduled {
            at: event.timestamp,
            sequence: self.sequence,
            event,
        });
    }

    /// Time of the earliest scheduled event.
    pub fn next_at(&self) -> Option<i64> {
        self.heap.peek().map(|s| s.at)
    }

    pub fn pop(&mut self) -> Option<Event> {
        self.heap.pop().map(|s| s.event)
    }
}

#[cfg(test)]
mod tests;
