//! Deleting the topics a statement leaves unused: a source dropped with
//! `DELETE TOPIC`, the internal topics of a terminated query.
//!
//! Outside a cluster this member is the only reader: it deletes them at
//! once. In a cluster every member applies the statement, and the others
//! may still read the topic when the member the statement was sent to is
//! done with it: their query stages, their pull-query materialization,
//! their clients' push queries. A
//! Kafka client reading a topic deleted under it is not safe (librdkafka
//! 2.12 crashes on Tansu's answer about the deleted topic), so the topics
//! are deleted once, by the member the command was sent to, in the
//! background, after a [`ReleaseGate`] has seen every live member apply the
//! command and stop using them, and a [`GRACE`] more. If that does not
//! happen within [`RELEASE_TIMEOUT`] the topics stay, with a warning:
//! better a leftover topic than a crashed member. Members applying a
//! command they were not sent, or replaying the topic at start, delete
//! nothing.
//!
//! Only readers are waited for. Every member's shared producer that wrote
//! to the topic keeps it in its metadata and goes on asking the broker
//! about it by name after the deletion; librdkafka takes Tansu's "unknown
//! topic" answer to that in its stride (seen with a 1 s metadata refresh:
//! over a hundred such answers a member in 70 s, no crash), so producers
//! need no care of their own.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::KsqlContext;
use crate::error::Result;

/// How long the member that deletes waits for the others to stop using
/// the topics.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(60);
/// Waited after the gate opens: a member reports what it uses as of its
/// last heartbeat, and lets go of its clients a moment after.
pub const GRACE: Duration = Duration::from_secs(2);
/// How often the gate is asked.
const ASK_EVERY: Duration = Duration::from_millis(200);

/// What the members of a cluster report, as far as deleting a topic
/// needs: the server wires it from its heartbeats, so this layer knows
/// nothing of how members talk.
pub trait ReleaseGate: Send + Sync {
    /// Whether every live member has applied the command at `offset` of
    /// the command topic and reports none of `topics` in use.
    fn released(&self, offset: i64, topics: &[String]) -> bool;
}

impl<F> ReleaseGate for F
where
    F: Fn(i64, &[String]) -> bool + Send + Sync,
{
    fn released(&self, offset: i64, topics: &[String]) -> bool {
        self(offset, topics)
    }
}

impl KsqlContext {
    /// Makes this member delete topics, in a cluster, only once `gate`
    /// says the others stopped using them. Without a gate a cluster member
    /// deletes as soon as it has applied the command itself.
    pub fn set_release_gate(&self, gate: Arc<dyn ReleaseGate>) {
        let _ = self.release_gate.set(gate);
    }

    /// The topics the statement being applied leaves unused, to delete:
    /// now outside a cluster; in a cluster, when the command is this
    /// member's and everyone let go of them (see the module docs). A
    /// command applied on another member's behalf, or replayed, leaves
    /// them be: they were (or are being) deleted where it was sent, and
    /// may hold a newer source's data by now.
    pub(super) fn release_topics(&self, topics: Vec<String>) -> Result<()> {
        if topics.is_empty() || self.replaying.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        if self.has_command_topic() {
            self.unreleased.lock().extend(topics);
            return Ok(());
        }
        // A server alone deletes at once, unless it was given a gate for
        // its own readers (on Kafka: see `set_release_gate`).
        if let Some(gate) = self.release_gate.get().cloned() {
            let backend = self.runtime.backend().clone();
            let spawned = std::thread::Builder::new()
                .name("sluice-release".into())
                .spawn(move || release_when_unread(&*gate, backend.as_ref(), topics));
            if let Err(e) = spawned {
                tracing::warn!("not deleting the dropped topics: {e}");
            }
            return Ok(());
        }
        let backend = self.runtime.backend();
        for topic in &topics {
            if backend.describe_topic(topic).is_some() {
                backend.delete_topic(topic)?;
            }
        }
        Ok(())
    }

    /// Starts deleting what the command at `offset`, this member's own,
    /// left to delete, on a thread of its own: the command runner and the
    /// statement's caller do not wait for the other members.
    pub(super) fn release_after(self: &Arc<Self>, offset: i64) {
        let topics = std::mem::take(&mut *self.unreleased.lock());
        if topics.is_empty() {
            return;
        }
        let gate = self.release_gate.get().cloned();
        let context = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("sluice-release".into())
            .spawn(move || release(context, gate, offset, topics));
        if let Err(e) = spawned {
            tracing::warn!(offset, "not deleting the topics command {offset} left: {e}");
        }
    }
}

/// Outside a cluster: waits for `gate` to report `topics` unread here
/// (and not taken over by a new source), then deletes them.
fn release_when_unread(
    gate: &dyn ReleaseGate,
    backend: &dyn sluice_engine::topic::TopicBackend,
    topics: Vec<String>,
) {
    let deadline = Instant::now() + RELEASE_TIMEOUT;
    while !gate.released(-1, &topics) {
        if Instant::now() >= deadline {
            tracing::warn!(
                ?topics,
                "not deleting these topics: still read here, or used by a new source, after {} s",
                RELEASE_TIMEOUT.as_secs()
            );
            return;
        }
        std::thread::sleep(ASK_EVERY);
    }
    for topic in topics {
        if backend.describe_topic(&topic).is_none() {
            continue;
        }
        match backend.delete_topic(&topic) {
            Ok(()) => tracing::info!(%topic, "deleted, nothing here reading it any more"),
            Err(e) => tracing::warn!(%topic, "deleting the topic: {e}"),
        }
    }
}

/// Waits for `gate` to release `topics`, then deletes those no source
/// uses by then.
fn release(
    context: Weak<KsqlContext>,
    gate: Option<Arc<dyn ReleaseGate>>,
    offset: i64,
    topics: Vec<String>,
) {
    if let Some(gate) = gate {
        let deadline = Instant::now() + RELEASE_TIMEOUT;
        while !gate.released(offset, &topics) {
            if Instant::now() >= deadline {
                tracing::warn!(
                    offset,
                    ?topics,
                    "not deleting these topics: some cluster member did not report within {} s that it applied command {offset} and stopped using them; delete them by hand once it has",
                    RELEASE_TIMEOUT.as_secs()
                );
                return;
            }
            std::thread::sleep(ASK_EVERY);
        }
        std::thread::sleep(GRACE);
    }
    let Some(ctx) = context.upgrade() else {
        return;
    };
    let backend = ctx.runtime.backend().clone();
    for topic in topics {
        // A source created meanwhile over the same topic keeps it.
        let reused = ctx
            .catalog
            .lock()
            .sources()
            .find(|s| s.topic == topic)
            .map(|s| s.name.clone());
        if let Some(source) = reused {
            tracing::warn!(%topic, %source, "not deleting the topic: a source created since uses it");
            continue;
        }
        if backend.describe_topic(&topic).is_none() {
            continue;
        }
        match backend.delete_topic(&topic) {
            Ok(()) => tracing::info!(%topic, offset, "deleted, every member having let go of it"),
            Err(e) => tracing::warn!(%topic, "deleting the topic: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_connectors::EmbeddedTopics;
    use sluice_engine::topic::TopicBackend;

    #[test]
    fn a_lone_server_deletes_a_dropped_topic_at_once() {
        let backend: Arc<dyn TopicBackend> = Arc::new(EmbeddedTopics::new());
        let ctx = KsqlContext::with_backend(backend.clone(), 64);
        ctx.execute(
            "CREATE STREAM s (k INT KEY, v INT) WITH (kafka_topic='s_topic', value_format='JSON', partitions=1);",
        )
        .expect("create");
        ctx.execute("DROP STREAM s;").expect("drop");
        assert!(backend.describe_topic("s_topic").is_some());
        ctx.execute(
            "CREATE STREAM s (k INT KEY, v INT) WITH (kafka_topic='s_topic', value_format='JSON');",
        )
        .expect("again");
        ctx.execute("DROP STREAM s DELETE TOPIC;").expect("drop");
        assert!(backend.describe_topic("s_topic").is_none());
    }
}
