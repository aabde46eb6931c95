//! [`KafkaMembership`]: a member of a Kafka consumer group that learns
//! which partitions are its own, for Sluice servers sharing a query.
//!
//! It subscribes to the topic but reads nothing: partitions assigned to it
//! are paused at once, because the query instances read their partitions
//! through their own consumers, from their checkpointed positions. What it
//! adds to librdkafka's default is that it holds each rebalance step until
//! the engine confirms it: librdkafka waits, in the eager protocol, for
//! `assign`/`unassign` calls, and no other member receives revoked
//! partitions before this one has let them go. That is what lets a server
//! checkpoint the state of a partition before its next owner restores it.

use std::time::Duration;

use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use sluice_engine::error::Result;
use sluice_engine::topic::{GroupChange, GroupMembership};

use super::{KafkaConfig, kafka_err};

/// A rebalance step librdkafka waits on.
#[derive(Debug)]
enum Pending {
    Revoke(Vec<i32>),
    Lost(Vec<i32>),
    Assign(TopicPartitionList),
}

/// Keeps the rebalance step the callback received, for the engine.
#[derive(Default)]
struct MembershipContext {
    pending: Mutex<Option<Pending>>,
    /// Set when the member leaves: closing the consumer waits for the
    /// revocation, which nobody confirms any more.
    closing: std::sync::atomic::AtomicBool,
}

impl ClientContext for MembershipContext {}

impl ConsumerContext for MembershipContext {
    fn rebalance(
        &self,
        base_consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        if self.closing.load(std::sync::atomic::Ordering::SeqCst) {
            if let Err(e) = base_consumer.unassign() {
                tracing::debug!("Kafka: unassigning while leaving the group: {e}");
            }
            return;
        }
        let step = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Pending::Assign(tpl.clone()),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let partitions = tpl.elements().iter().map(|e| e.partition()).collect();
                if base_consumer.assignment_lost() {
                    Pending::Lost(partitions)
                } else {
                    Pending::Revoke(partitions)
                }
            }
            other => {
                // Not a step of the protocol: what librdkafka itself does.
                let code: RDKafkaErrorCode = other.into();
                tracing::warn!("Kafka: rebalancing failed: {code}");
                if let Err(e) = base_consumer.unassign() {
                    tracing::warn!("Kafka: unassigning after a failed rebalance: {e}");
                }
                return;
            }
        };
        *self.pending.lock() = Some(step);
    }
}

/// One member of a consumer group over one topic.
pub struct KafkaMembership {
    topic: String,
    consumer: BaseConsumer<MembershipContext>,
    /// The step returned by the last poll, until confirmed.
    returned: Option<Pending>,
    owned: Vec<i32>,
    /// Set between leaving and joining again (see `rejoin`).
    rejoining: bool,
}

impl KafkaMembership {
    pub(super) fn join(config: &KafkaConfig, group: &str, topic: &str) -> Result<Self> {
        let consumer: BaseConsumer<MembershipContext> = config
            .client_with(&[
                // A member that died is noticed within this, and its
                // partitions go to the others.
                ("session.timeout.ms", "6000".into()),
                ("heartbeat.interval.ms", "1000".into()),
                // Eager: every rebalance revokes everything, then assigns;
                // the engine keeps in memory what it gets back.
                ("partition.assignment.strategy", "range".into()),
            ])
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("allow.auto.create.topics", "false")
            .create_with_context(MembershipContext::default())
            .map_err(|e| kafka_err("creating a group member", e))?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| kafka_err("joining a consumer group", e))?;
        Ok(KafkaMembership {
            topic: topic.to_string(),
            consumer,
            returned: None,
            owned: Vec::new(),
            rejoining: false,
        })
    }
}

impl GroupMembership for KafkaMembership {
    fn poll(&mut self) -> Result<Option<GroupChange>> {
        if let Some(step) = &self.returned {
            // Still waiting for its confirmation.
            return Ok(Some(change(step)));
        }
        // Serves the group protocol; records are not expected (assigned
        // partitions are paused), and dropped if some were fetched first.
        while let Some(message) = self.consumer.poll(Duration::ZERO) {
            if let Err(e) = message {
                tracing::debug!(topic = %self.topic, "Kafka: group member: {e}");
            }
        }
        let step = self.consumer.context().pending.lock().take();
        let Some(step) = step else {
            return Ok(None);
        };
        let returned = change(&step);
        self.returned = Some(step);
        Ok(Some(returned))
    }

    fn confirm(&mut self) -> Result<()> {
        match self.returned.take() {
            None => Ok(()),
            Some(Pending::Revoke(_) | Pending::Lost(_)) => {
                self.owned.clear();
                self.consumer
                    .unassign()
                    .map_err(|e| kafka_err("giving partitions back to the group", e))?;
                if self.rejoining {
                    self.rejoining = false;
                    self.subscribe()?;
                }
                Ok(())
            }
            Some(Pending::Assign(mut tpl)) => {
                // Positions do not matter (nothing is read); the end keeps
                // whatever is fetched before the pause small.
                tpl.set_all_offsets(Offset::End)
                    .map_err(|e| kafka_err("taking assigned partitions", e))?;
                self.consumer
                    .assign(&tpl)
                    .map_err(|e| kafka_err("taking assigned partitions", e))?;
                if tpl.count() > 0 {
                    self.consumer
                        .pause(&tpl)
                        .map_err(|e| kafka_err("pausing assigned partitions", e))?;
                }
                self.owned = tpl.elements().iter().map(|e| e.partition()).collect();
                self.owned.sort_unstable();
                Ok(())
            }
        }
    }

    fn owned(&self) -> Vec<i32> {
        self.owned.clone()
    }

    fn rejoin(&mut self) -> Result<()> {
        if self.rejoining || self.returned.is_some() {
            // A rebalance is under way already.
            return Ok(());
        }
        self.consumer.unsubscribe();
        if self.owned.is_empty() {
            // Nothing to revoke, so no revocation to wait for.
            return self.subscribe();
        }
        // Joined again once the revocation is confirmed.
        self.rejoining = true;
        Ok(())
    }
}

impl KafkaMembership {
    fn subscribe(&self) -> Result<()> {
        self.consumer
            .subscribe(&[self.topic.as_str()])
            .map_err(|e| kafka_err("joining a consumer group", e))
    }
}

fn change(step: &Pending) -> GroupChange {
    match step {
        Pending::Revoke(partitions) => GroupChange::Revoked(sorted(partitions)),
        Pending::Lost(partitions) => GroupChange::Lost(sorted(partitions)),
        Pending::Assign(tpl) => {
            let mut partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            partitions.sort_unstable();
            GroupChange::Assigned(partitions)
        }
    }
}

fn sorted(partitions: &[i32]) -> Vec<i32> {
    let mut partitions = partitions.to_vec();
    partitions.sort_unstable();
    partitions
}

impl Drop for KafkaMembership {
    fn drop(&mut self) {
        // Leaving the group promptly lets the others take over now rather
        // than after the session timeout.
        self.consumer
            .context()
            .closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // A step the engine has not confirmed (or not seen) would hold
        // the close forever.
        let unseen = self.consumer.context().pending.lock().take();
        if self.returned.take().is_some() || unseen.is_some() {
            let _ = self.consumer.unassign();
        }
        self.consumer.unsubscribe();
    }
}
