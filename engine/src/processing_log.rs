//! The processing log: where records that could not be processed go.
//!
//! A record that fails to decode, or whose expressions fail to evaluate, is
//! not allowed to stop its query. It is counted and kept here with the
//! reason, so that it can be inspected later (as ksqlDB's
//! `KSQL_PROCESSING_LOG`), and the query moves on to the next record.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;

/// What went wrong with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProcessingErrorKind {
    /// The key or value bytes did not decode in the source's format.
    Deserialization,
    /// An expression failed for the record (bad cast, division by zero...).
    Evaluation,
    /// A result could not be encoded in the sink's format.
    Serialization,
    /// The record was dropped by a rule, for example a null GROUP BY key.
    Dropped,
}

/// One failed record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessingLogEntry {
    pub query_id: String,
    pub kind: ProcessingErrorKind,
    pub message: String,
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    /// The offending record, as text where it is UTF-8.
    pub record: Option<String>,
}

/// A bounded, shared log of failed records with a running count.
#[derive(Debug)]
pub struct ProcessingLog {
    entries: Mutex<VecDeque<ProcessingLogEntry>>,
    capacity: usize,
    total: AtomicU64,
    /// Records logged since start, by query id (never dropped).
    by_query: Mutex<HashMap<String, u64>>,
}

impl Default for ProcessingLog {
    fn default() -> Self {
        ProcessingLog::with_capacity(10_000)
    }
}

impl ProcessingLog {
    /// Keeps at most `capacity` entries, dropping the oldest; the count
    /// still includes every entry ever logged.
    pub fn with_capacity(capacity: usize) -> Self {
        ProcessingLog {
            entries: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            total: AtomicU64::new(0),
            by_query: Mutex::new(HashMap::new()),
        }
    }

    pub fn log(&self, entry: ProcessingLogEntry) {
        tracing::debug!(query = %entry.query_id, kind = ?entry.kind, "{}", entry.message);
        self.total.fetch_add(1, Ordering::Relaxed);
        *self
            .by_query
            .lock()
            .entry(entry.query_id.clone())
            .or_default() += 1;
        let mut entries = self.entries.lock();
        if entries.len() == self.capacity {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// How many records were logged since start.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Records logged since start, by query id, sorted by id.
    pub fn counts_by_query(&self) -> Vec<(String, u64)> {
        let mut counts: Vec<(String, u64)> = self
            .by_query
            .lock()
            .iter()
            .map(|(id, n)| (id.clone(), *n))
            .collect();
        counts.sort();
        counts
    }

    /// The retained entries, oldest first.
    pub fn entries(&self) -> Vec<ProcessingLogEntry> {
        self.entries.lock().iter().cloned().collect()
    }

    /// The retained entries logged after the first `seen` ever logged, and
    /// the new count to pass next time. Entries already dropped for
    /// capacity are skipped.
    pub fn entries_after(&self, seen: u64) -> (Vec<ProcessingLogEntry>, u64) {
        let entries = self.entries.lock();
        let total = self.total();
        let retained = entries.len() as u64;
        let first_retained = total.saturating_sub(retained);
        let skip = seen.saturating_sub(first_retained) as usize;
        (entries.iter().skip(skip).cloned().collect(), total)
    }
}

/// Copies the processing log to a topic, as ksqlDB writes its
/// `ksql_processing_log` topic, one JSON record per failed record. Runs
/// after each pass of the runtime ([`crate::runtime::StepObserver`]).
pub struct ProcessingLogTopic {
    log: std::sync::Arc<ProcessingLog>,
    backend: std::sync::Arc<dyn crate::topic::TopicBackend>,
    topic: String,
    forwarded: Mutex<u64>,
}

impl ProcessingLogTopic {
    /// Creates the topic (one partition) when it does not exist yet.
    pub fn new(
        log: std::sync::Arc<ProcessingLog>,
        backend: std::sync::Arc<dyn crate::topic::TopicBackend>,
        topic: &str,
    ) -> crate::error::Result<Self> {
        if backend.describe_topic(topic).is_none() {
            match backend.create_topic(topic, 1, 1) {
                Ok(()) | Err(crate::error::EngineError::TopicExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let forwarded = Mutex::new(log.total());
        Ok(ProcessingLogTopic {
            log,
            backend,
            topic: topic.to_string(),
            forwarded,
        })
    }
}

/// ksqlDB's processing-log message: a level, the logger named after the
/// query, and a message whose `type` says which error field is set.
fn log_record(entry: &ProcessingLogEntry, time: i64) -> serde_json::Value {
    let (kind, field) = match entry.kind {
        ProcessingErrorKind::Deserialization => (0, "deserializationError"),
        ProcessingErrorKind::Evaluation | ProcessingErrorKind::Dropped => {
            (1, "recordProcessingError")
        }
        ProcessingErrorKind::Serialization => (3, "serializationError"),
    };
    serde_json::json!({
        "level": "ERROR",
        "logger": format!("processing.{}", entry.query_id),
        "time": time,
        "message": {
            "type": kind,
            field: {
                "errorMessage": entry.message,
                "record": entry.record,
                "topic": entry.topic,
                "partition": entry.partition,
                "offset": entry.offset,
                "cause": [],
            },
        },
    })
}

impl crate::runtime::StepObserver for ProcessingLogTopic {
    fn after_step(&self) -> usize {
        let mut forwarded = self.forwarded.lock();
        let (entries, total) = self.log.entries_after(*forwarded);
        if entries.is_empty() {
            *forwarded = total;
            return 0;
        }
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let records = entries
            .iter()
            .map(|e| {
                (
                    crate::topic::Partitioning::Explicit(0),
                    crate::topic::Record {
                        key: None,
                        value: Some(bytes::Bytes::from(log_record(e, time).to_string())),
                        timestamp: time,
                        headers: vec![],
                    },
                )
            })
            .collect();
        match self.backend.produce(&self.topic, records) {
            Ok(_) => {
                *forwarded = total;
                entries.len()
            }
            Err(e) => {
                // Kept for the next pass: a broker hiccup loses no entry.
                tracing::warn!("writing the processing log to {}: {e}", self.topic);
                0
            }
        }
    }
}
