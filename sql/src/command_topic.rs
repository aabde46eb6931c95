//! [`CommandTopic`]: the command log of a cluster, the topic form of the
//! file [`crate::statement_log::StatementLog`].
//!
//! Every member of a cluster appends the catalog-changing statements it is
//! sent to one single-partition topic, `_sluice-<service id>-command_topic`,
//! and applies every record of it, its own included, in the topic's order:
//! the order, not the member that received a statement, decides what each
//! catalog holds and which number each query gets, so all of them agree.
//! A record's value is one [`LoggedStatement`] as JSON; its key is the
//! sending member. The topic is written against the engine's
//! [`TopicBackend`], so this layer does not know it is Kafka.

use std::sync::Arc;

use bytes::Bytes;
use sluice_engine::topic::{Partitioning, Record, TopicBackend, TopicConsumer};

use crate::error::{Result, SqlError};
use crate::statement_log::LoggedStatement;

/// The command topic of a service id.
pub fn command_topic_name(service_id: &str) -> String {
    format!("_sluice-{service_id}-command_topic")
}

/// A command read back, at its offset; `Err` holds why a record is not a
/// command (written by something else, or damaged).
pub type ReadCommand = (i64, std::result::Result<LoggedStatement, String>);

fn topic_err(topic: &str, what: &str, e: impl std::fmt::Display) -> SqlError {
    SqlError::Statement(format!("command topic {topic}: {what}: {e}"))
}

/// The record a command is stored as.
pub fn encode(command: &LoggedStatement) -> Result<Record> {
    let value = serde_json::to_vec(command)
        .map_err(|e| SqlError::Statement(format!("encoding a command: {e}")))?;
    Ok(Record {
        key: command.origin.clone().map(Bytes::from),
        value: Some(Bytes::from(value)),
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        headers: Vec::new(),
    })
}

/// The command a record holds.
pub fn decode(record: &Record) -> std::result::Result<LoggedStatement, String> {
    let Some(value) = &record.value else {
        return Err("a record without a value".into());
    };
    serde_json::from_slice(value).map_err(|e| format!("not a command: {e}"))
}

/// The command topic, appending.
pub struct CommandTopic {
    backend: Arc<dyn TopicBackend>,
    name: String,
}

impl CommandTopic {
    /// Opens `name` on `backend`, creating it with one partition unless
    /// it exists (members starting together race to create it; one wins).
    pub fn open(backend: Arc<dyn TopicBackend>, name: &str) -> Result<Self> {
        if backend.describe_topic(name).is_none() {
            match backend.create_topic(name, 1, 1) {
                Ok(()) | Err(sluice_engine::EngineError::TopicExists(_)) => {}
                Err(e) => return Err(topic_err(name, "creating it", e)),
            }
        }
        if let Some(description) = backend.describe_topic(name)
            && description.partitions != 1
        {
            // Order across partitions is undefined: members would apply
            // commands in different orders and their catalogs drift apart.
            return Err(topic_err(
                name,
                "refusing it",
                format!(
                    "it has {} partitions, and a command topic must have one",
                    description.partitions
                ),
            ));
        }
        Ok(CommandTopic {
            backend,
            name: name.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Appends a command; returns its offset once it is in the topic.
    pub fn append(&self, command: &LoggedStatement) -> Result<i64> {
        let record = encode(command)?;
        let written = self
            .backend
            .produce(&self.name, vec![(Partitioning::Explicit(0), record)])
            .map_err(|e| topic_err(&self.name, "appending", e))?;
        written
            .first()
            .map(|(_, offset)| *offset)
            .ok_or_else(|| topic_err(&self.name, "appending", "the broker reported no offset"))
    }

    /// A reader of the whole topic, from its first record.
    pub fn reader(&self) -> Result<CommandReader> {
        let consumer = self
            .backend
            .consumer(&self.name)
            .map_err(|e| topic_err(&self.name, "reading", e))?;
        Ok(CommandReader {
            name: self.name.clone(),
            consumer,
        })
    }
}

/// Reads the command topic in order.
pub struct CommandReader {
    name: String,
    consumer: Box<dyn TopicConsumer>,
}

impl CommandReader {
    /// Up to `max` commands available now, in order; empty when caught up.
    pub fn poll(&mut self, max: usize) -> Result<Vec<ReadCommand>> {
        let records = self
            .consumer
            .poll(max)
            .map_err(|e| topic_err(&self.name, "reading", e))?;
        Ok(records
            .into_iter()
            .map(|r| (r.offset, decode(&r.record)))
            .collect())
    }

    /// The offset the next append will get: what a reader must have
    /// applied to be caught up with the topic as it is now.
    pub fn end(&self) -> i64 {
        let position = self
            .consumer
            .positions()
            .first()
            .map_or(0, |(_, offset)| *offset);
        position + i64::try_from(self.consumer.lag()).unwrap_or(i64::MAX / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_connectors::EmbeddedTopics;

    fn command(sql: &str, if_absent: bool) -> LoggedStatement {
        LoggedStatement {
            sql: sql.into(),
            origin: Some("http://127.0.0.1:8088".into()),
            command_id: Some(format!("c-{sql}")),
            if_absent,
            ..LoggedStatement::default()
        }
    }

    #[test]
    fn commands_round_trip_through_a_record() {
        let c = command("CREATE STREAM s (k INT KEY) WITH (kafka_topic='s');", true);
        let record = encode(&c).expect("encode");
        assert_eq!(record.key.as_deref(), Some(&b"http://127.0.0.1:8088"[..]));
        assert_eq!(decode(&record), Ok(c));
        let plain = LoggedStatement {
            sql: "SET 'a'='b';".into(),
            ..LoggedStatement::default()
        };
        // The fields a command does not use stay out of its JSON, so the
        // file log's lines are as before.
        let text = String::from_utf8(encode(&plain).expect("encode").value.unwrap().to_vec())
            .expect("utf8");
        assert_eq!(text, r#"{"sql":"SET 'a'='b';"}"#);
        let bad = Record {
            value: Some(Bytes::from_static(b"{\"not\":1}")),
            ..Record::default()
        };
        assert!(decode(&bad).is_err());
        assert!(decode(&Record::default()).is_err());
    }

    #[test]
    fn appended_commands_read_back_in_order_with_their_offsets() {
        let backend: Arc<dyn TopicBackend> = Arc::new(EmbeddedTopics::new());
        let topic = CommandTopic::open(backend.clone(), &command_topic_name("t_")).expect("open");
        // A second member opening it finds it created.
        let again = CommandTopic::open(backend.clone(), topic.name()).expect("reopen");
        let a = command("SET 'a'='1';", false);
        let b = command("SET 'b'='2';", true);
        assert_eq!(topic.append(&a).expect("append"), 0);
        assert_eq!(again.append(&b).expect("append"), 1);
        let mut reader = topic.reader().expect("reader");
        assert_eq!(reader.end(), 2);
        let mut read = Vec::new();
        while read.len() < 2 {
            let batch = reader.poll(10).expect("poll");
            assert!(!batch.is_empty(), "commands missing: {read:?}");
            read.extend(batch);
        }
        assert_eq!(read, vec![(0, Ok(a)), (1, Ok(b))]);
        assert_eq!(reader.end(), 2);
    }

    #[test]
    fn a_topic_of_several_partitions_is_refused() {
        let backend: Arc<dyn TopicBackend> = Arc::new(EmbeddedTopics::new());
        backend.create_topic("commands", 3, 1).expect("create");
        let err = CommandTopic::open(backend, "commands")
            .err()
            .expect("refused");
        assert!(err.to_string().contains("3 partitions"), "{err}");
    }
}
