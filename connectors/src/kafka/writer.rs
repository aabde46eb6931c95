//! [`KafkaTopicWriter`]: a query's sink on Kafka, pipelined.
//!
//! Records are handed to librdkafka and the writer moves on; their
//! deliveries are collected as they complete, and waited for only in
//! [`TopicWriter::flush`], which the query calls before it checkpoints
//! (and when it is idle). Waiting for every batch's acknowledgements
//! before reading the next one left the engine idle for a round trip per
//! batch, which halved a query that writes about a record per input.
//!
//! Deliveries that fail for a transient reason are sent again, oldest
//! first, before any newer record is handed over; any other failure is
//! the query's error, reported by the next `write` or `flush`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use parking_lot::Mutex;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, Producer};
use sluice_engine::error::{EngineError, Result};
use sluice_engine::topic::{Partitioning, Record, TopicWriter};

use super::{KafkaConfig, MAX_BACKOFF, REQUEST_TIMEOUT, fences, kafka_err, transient_error};

/// A record handed to librdkafka, kept until its delivery is known so it
/// can be sent again.
struct InFlight {
    /// Hand-over order, so retries keep it.
    seq: u64,
    record: (Partitioning, Record),
    delivery: DeliveryFuture,
}

/// A record whose delivery failed for a transient reason.
struct Failed {
    seq: u64,
    record: (Partitioning, Record),
    error: KafkaError,
}

/// Writes one topic through the backend's shared producer.
pub struct KafkaTopicWriter {
    topic: String,
    config: KafkaConfig,
    /// Shared with the backend and the other writers; replaced when
    /// librdkafka declares it fatally failed.
    producer: Arc<Mutex<FutureProducer>>,
    /// Looked up at the first write: the sink topic may be created after
    /// the query is planned.
    partitions: Option<u32>,
    in_flight: VecDeque<InFlight>,
    failed: Vec<Failed>,
    next_seq: u64,
}

impl KafkaTopicWriter {
    pub(super) fn new(
        topic: &str,
        config: KafkaConfig,
        producer: Arc<Mutex<FutureProducer>>,
        partitions: Option<u32>,
    ) -> Self {
        KafkaTopicWriter {
            topic: topic.to_string(),
            config,
            producer,
            partitions,
            in_flight: VecDeque::new(),
            failed: Vec::new(),
            next_seq: 0,
        }
    }

    fn partitions(&mut self) -> Result<u32> {
        if let Some(n) = self.partitions {
            return Ok(n);
        }
        let producer = self.producer.lock().clone();
        let metadata = producer
            .client()
            .fetch_metadata(Some(&self.topic), REQUEST_TIMEOUT)
            .map_err(|e| kafka_err("reading topic metadata", e))?;
        let n = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.topic && t.error().is_none())
            .map(|t| t.partitions().len())
            .filter(|n| *n > 0)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| EngineError::UnknownTopic(self.topic.clone()))?;
        self.partitions = Some(n);
        Ok(n)
    }

    /// Hands one record to librdkafka; a full local queue is drained by
    /// waiting for the oldest delivery.
    fn send(
        &mut self,
        producer: &FutureProducer,
        partitions: u32,
        seq: u64,
        record: (Partitioning, Record),
    ) -> Result<()> {
        loop {
            // The record is copied into librdkafka's queue: nothing stays
            // borrowed after the call.
            let sent = producer
                .send_result(super::future_record(&self.topic, partitions, &record))
                .map_err(|(e, _)| e);
            match sent {
                Ok(delivery) => {
                    self.in_flight.push_back(InFlight {
                        seq,
                        record,
                        delivery,
                    });
                    return Ok(());
                }
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    if self.in_flight.is_empty() {
                        // Other writers fill the queue: let it drain.
                        std::thread::sleep(Duration::from_millis(10));
                    } else {
                        self.settle_oldest()?;
                    }
                }
                Err(e) if transient_error(&e) => {
                    self.failed.push(Failed {
                        seq,
                        record,
                        error: e,
                    });
                    return Ok(());
                }
                Err(e) => return Err(kafka_err("producing", e)),
            }
        }
    }

    /// Waits for the oldest record in flight and files its outcome.
    fn settle_oldest(&mut self) -> Result<()> {
        let Some(InFlight {
            seq,
            record,
            mut delivery,
        }) = self.in_flight.pop_front()
        else {
            return Ok(());
        };
        let outcome = wait(&mut delivery);
        self.file(seq, record, outcome)
    }

    /// Files the outcomes of the oldest records whose deliveries are
    /// known, without waiting.
    fn settle_ready(&mut self) -> Result<()> {
        let mut cx = Context::from_waker(Waker::noop());
        while let Some(front) = self.in_flight.front_mut() {
            let Poll::Ready(outcome) = Pin::new(&mut front.delivery).poll(&mut cx) else {
                return Ok(());
            };
            let Some(InFlight { seq, record, .. }) = self.in_flight.pop_front() else {
                return Ok(());
            };
            self.file(seq, record, outcome)?;
        }
        Ok(())
    }

    fn file(&mut self, seq: u64, record: (Partitioning, Record), outcome: Outcome) -> Result<()> {
        match outcome {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) if transient_error(&e) => {
                self.failed.push(Failed {
                    seq,
                    record,
                    error: e,
                });
                Ok(())
            }
            Ok(Err((e, _))) => Err(kafka_err("delivering a record", e)),
            // The producer was dropped (replaced after a fatal error)
            // with the record still queued: it may not have been written.
            Err(_) => {
                self.failed.push(Failed {
                    seq,
                    record,
                    error: KafkaError::MessageProduction(RDKafkaErrorCode::PurgeQueue),
                });
                Ok(())
            }
        }
    }

    /// Sends failed records again, oldest first, until the broker takes
    /// every one; waits for everything in flight meanwhile.
    fn redeliver(&mut self) -> Result<()> {
        let mut backoff = Duration::from_millis(100);
        loop {
            while !self.in_flight.is_empty() {
                self.settle_oldest()?;
            }
            if self.failed.is_empty() {
                return Ok(());
            }
            let mut failed = std::mem::take(&mut self.failed);
            failed.sort_by_key(|f| f.seq);
            tracing::warn!(
                "Kafka: {} records to '{}' not delivered ({}); sending them again in {backoff:?}",
                failed.len(),
                self.topic,
                failed[0].error
            );
            let fatal = self.producer.lock().client().fatal_error();
            let fenced = failed
                .iter()
                .any(|f| f.error.rdkafka_error_code().is_some_and(fences));
            if fatal.is_some() || fenced {
                let (code, reason) =
                    fatal.unwrap_or((RDKafkaErrorCode::ProducerFenced, String::new()));
                tracing::warn!("Kafka: the producer failed ({code} {reason}); replacing it");
                *self.producer.lock() = self.config.producer()?;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
            let producer = self.producer.lock().clone();
            let partitions = self.partitions()?;
            for f in failed {
                self.send(&producer, partitions, f.seq, f.record)?;
            }
        }
    }
}

/// What a delivery future resolves to: the delivery's result, or
/// cancellation when its producer was dropped first.
type Outcome = <DeliveryFuture as Future>::Output;

/// Wakes the thread blocked in [`wait`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Blocks this thread until `delivery` completes. librdkafka completes
/// every delivery within `message.timeout.ms`, failed or not.
fn wait(delivery: &mut DeliveryFuture) -> Outcome {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(outcome) = Pin::new(&mut *delivery).poll(&mut cx) {
            return outcome;
        }
        std::thread::park();
    }
}

impl TopicWriter for KafkaTopicWriter {
    fn write(&mut self, records: Vec<(Partitioning, Record)>) -> Result<()> {
        self.settle_ready()?;
        if !self.failed.is_empty() {
            self.redeliver()?;
        }
        let partitions = self.partitions()?;
        let producer = self.producer.lock().clone();
        for record in records {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.send(&producer, partitions, seq, record)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.redeliver()
    }
}
