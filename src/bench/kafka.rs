//! `sluice bench --kafka`: a scenario end to end through a Kafka broker,
//! against the raw rate at which rdkafka alone consumes the same topic
//! from the same broker in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use sluice_connectors::kafka::tansu::TansuBroker;
use sluice_connectors::{KafkaConfig, KafkaTopics};
use sluice_engine::topic::{Partitioning, Record, TopicBackend};
use sluice_sql::KsqlContext;

use super::scenarios::Scenario;
use super::{BATCH, T0, cpu_seconds, peak_rss_bytes};

/// Longest a phase may take before the run is declared stuck.
const PATIENCE: Duration = Duration::from_secs(300);

/// `servers` is `host:port[,...]`, or `tansu` to start a private broker.
pub fn throughput(scenario: &Scenario, events: usize, servers: &str) -> Result<Value> {
    if scenario.preload.is_some() {
        bail!(
            "{} preloads a table; through Kafka only single-input scenarios run",
            scenario.name
        );
    }
    let _broker;
    let servers = if servers == "tansu" {
        let broker = TansuBroker::start().map_err(anyhow::Error::msg)?;
        let address = broker.bootstrap_servers();
        _broker = Some(broker);
        address
    } else {
        _broker = None;
        servers.to_string()
    };
    let mut config = KafkaConfig::new(servers.clone());
    config.service_id = format!("bench_{}_", super::now_ms());
    let topics = Arc::new(
        KafkaTopics::connect(config)
            .with_context(|| format!("connecting to Kafka at {servers}"))?,
    );
    if topics.describe_topic(scenario.input_topic).is_some() {
        bail!(
            "topic {} exists on {servers}; run against a fresh broker (or --kafka tansu)",
            scenario.input_topic
        );
    }
    let ctx = KsqlContext::with_backend(topics.clone(), BATCH);
    ctx.execute(scenario.sql)
        .map_err(|e| anyhow::anyhow!("{}: {}", scenario.name, e.error))?;

    eprintln!(
        "  writing {events} events to {} on {servers}",
        scenario.input_topic
    );
    let mut written = 0;
    while written < events {
        let end = (written + 50_000).min(events);
        let chunk: Vec<(Partitioning, Record)> = (written..end)
            .map(|i| {
                (
                    Partitioning::Explicit(0),
                    (scenario.event)(i, T0 + i as i64),
                )
            })
            .collect();
        topics
            .produce(scenario.input_topic, chunk)
            .context("writing the input")?;
        written = end;
        eprintln!("  written {written}");
    }

    let raw = raw_consume_seconds(&servers, scenario.input_topic, events)?;
    eprintln!("  raw rdkafka consume: {:.0} events/s", events as f64 / raw);

    let cpu = cpu_seconds();
    let started = Instant::now();
    let mut consumed = 0;
    while consumed < events {
        let n = ctx.runtime().step();
        consumed += n;
        if n == 0 {
            if started.elapsed() > PATIENCE {
                bail!("only {consumed} of {events} events consumed after {PATIENCE:?}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // Sinks pipeline their writes: the run ends when the broker has
    // acknowledged every result.
    ctx.runtime().flush();
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    let failed = ctx.runtime().processing_log().total();
    if failed > 0 {
        bail!(
            "{}: {failed} records failed; the run does not count",
            scenario.name
        );
    }
    // Every result the query counted is in the output topic: read back
    // (Tansu's watermarks trail its acknowledgements a little).
    let written: u64 = ctx.runtime().metrics().iter().map(|m| m.records_out).sum();
    let mut output = topics
        .consumer(scenario.output_topic)
        .context("opening the output topic")?;
    let mut delivered = 0u64;
    let mut progress = Instant::now();
    while delivered < written && progress.elapsed() < Duration::from_secs(10) {
        let n = output.poll(BATCH)?.len() as u64;
        if n > 0 {
            progress = Instant::now();
        }
        delivered += n;
    }
    if written == 0 || delivered != written {
        bail!(
            "{}: the query wrote {written} results, the output topic holds {delivered}",
            scenario.name
        );
    }
    eprintln!("  {written} results in {}", scenario.output_topic);
    Ok(json!({
        "scenario": scenario.name,
        "mode": "kafka-throughput",
        "events": events,
        "events_per_sec": (events as f64 / seconds).round(),
        "latency_ms": null,
        "peak_rss_bytes": peak_rss_bytes(),
        "cpu_seconds": cpu,
        "limit_events_per_sec": (events as f64 / raw).round(),
        "limit": "raw rdkafka consume of the input topic, same broker, same run",
    }))
}

/// Seconds for a bare rdkafka consumer to read `events` records of
/// `topic` from the beginning, touching each payload and nothing else.
fn raw_consume_seconds(servers: &str, topic: &str, events: usize) -> Result<f64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", format!("sluice-bench-raw-{}", super::now_ms()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .context("creating the raw consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("reading the topic's partitions")?;
    let mut assignment = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            assignment
                .add_partition_offset(topic, p.id(), Offset::Beginning)
                .context("assigning")?;
        }
    }
    consumer.assign(&assignment).context("assigning")?;
    let started = Instant::now();
    let (mut read, mut bytes) = (0, 0usize);
    while read < events {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                read += 1;
                bytes += message.payload().map_or(0, <[u8]>::len);
            }
            Some(Err(e)) => bail!("raw consume: {e}"),
            None if started.elapsed() > PATIENCE => {
                bail!("raw consume read {read} of {events} records in {PATIENCE:?}")
            }
            None => {}
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("  raw consume read {read} records, {} MiB", bytes >> 20);
    Ok(seconds)
}
