//! `sluice bench --kafka`: a scenario end to end through a Kafka broker.
//! Throughput is set against the raw rate at which rdkafka alone consumes
//! the same topics from the same broker in the same run; with `--rate`,
//! latency runs from an event's creation (its timestamp) to the moment
//! its result can be read from the output topic by a separate consumer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use sluice_connectors::kafka::tansu::TansuBroker;
use sluice_connectors::{KafkaConfig, KafkaTopics};
use sluice_engine::topic::TopicBackend;
use sluice_sql::KsqlContext;

use super::scenarios::Scenario;
use super::{BATCH, T0, cpu_seconds, now_ms, peak_rss_bytes};

/// Longest a phase may take before the run is declared stuck.
const PATIENCE: Duration = Duration::from_secs(300);

/// A broker to run against: `servers`, or a private Tansu when it is
/// `tansu` (kept running while the value lives).
struct Broker {
    servers: String,
    _tansu: Option<TansuBroker>,
}

impl Broker {
    fn open(servers: &str) -> Result<Self> {
        if servers == "tansu" {
            let tansu = TansuBroker::start().map_err(anyhow::Error::msg)?;
            Ok(Broker {
                servers: tansu.bootstrap_servers(),
                _tansu: Some(tansu),
            })
        } else {
            Ok(Broker {
                servers: servers.to_string(),
                _tansu: None,
            })
        }
    }
}

/// Sluice's Kafka backend on `broker` with the scenario's statements
/// run, after checking its input topics are new.
fn prepare(
    scenario: &Scenario,
    broker: &Broker,
    properties: &[(String, String)],
) -> Result<(Arc<KafkaTopics>, KsqlContext)> {
    if scenario.preload.is_some() {
        bail!(
            "{} preloads a table; through Kafka only scenarios without a preload run",
            scenario.name
        );
    }
    let servers = &broker.servers;
    let mut config = KafkaConfig::new(servers.clone());
    config.service_id = format!("bench_{}_", now_ms());
    config.properties = properties.to_vec();
    let topics = Arc::new(
        KafkaTopics::connect(config)
            .with_context(|| format!("connecting to Kafka at {servers}"))?,
    );
    for input in scenario.inputs {
        if topics.describe_topic(input.topic).is_some() {
            bail!(
                "topic {} exists on {servers}; run against a fresh broker (or --kafka tansu)",
                input.topic
            );
        }
    }
    let ctx = KsqlContext::with_backend(topics.clone(), BATCH);
    ctx.execute(scenario.sql)
        .map_err(|e| anyhow::anyhow!("{}: {}", scenario.name, e.error))?;
    Ok((topics, ctx))
}

/// `servers` is `host:port[,...]`, or `tansu` to start a private broker.
pub fn throughput(
    scenario: &Scenario,
    events: usize,
    servers: &str,
    properties: &[(String, String)],
) -> Result<Value> {
    let broker = Broker::open(servers)?;
    let servers = broker.servers.clone();
    let (topics, ctx) = prepare(scenario, &broker, properties)?;

    eprintln!("  writing {events} events on {servers}");
    let mut written = 0;
    let mut source = (scenario.events)();
    let mut per_topic = vec![0; scenario.inputs.len()];
    while written < events {
        let end = (written + 50_000).min(events);
        let mut chunk = vec![Vec::new(); scenario.inputs.len()];
        for i in written..end {
            let (input, record) = source(i, T0 + i as i64);
            chunk[input].push(record);
        }
        for ((input, records), count) in scenario.inputs.iter().zip(chunk).zip(&mut per_topic) {
            *count += records.len();
            if !records.is_empty() {
                super::produce(topics.as_ref(), input.topic, records)
                    .context("writing the input")?;
            }
        }
        written = end;
        eprintln!("  written {written}");
    }

    let mut raw = 0.0;
    for (input, count) in scenario.inputs.iter().zip(&per_topic) {
        if *count > 0 {
            raw += raw_consume_seconds(&servers, input.topic, *count)?;
        }
    }
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

/// Events produced to the broker at `rate` per second, stamped with the
/// wall clock when made; the engine runs on its own thread; a separate
/// rdkafka consumer reads the output topic and times each result against
/// the event time it carries (the newest input it reflects). So the
/// figure includes the input producer's batching, the broker both ways,
/// the engine and its acknowledged write of the result.
pub fn latency(
    scenario: &Scenario,
    events: usize,
    rate: f64,
    servers: &str,
    properties: &[(String, String)],
) -> Result<Value> {
    let limit = super::scaled_limit(scenario, events);
    let broker = Broker::open(servers)?;
    let (topics, ctx) = prepare(scenario, &broker, properties)?;
    let output = assigned_consumer(
        &broker.servers,
        scenario.output_topic,
        "sluice-bench-reader",
    )?;
    let driver = ctx
        .runtime()
        .spawn()
        .context("starting the engine thread")?;
    // The same consumer on the first input: what the broker alone adds
    // between producing an event and reading it back.
    let input = assigned_consumer(
        &broker.servers,
        scenario.inputs[0].topic,
        "sluice-bench-broker",
    )?;
    let done = Arc::new(AtomicBool::new(false));
    let reader = spawn_reader(output, done.clone());
    let broker_reader = spawn_reader(input, done.clone());
    let cpu = cpu_seconds();
    let started = Instant::now();
    let paced = super::paced(scenario, events, rate, |batch| {
        for (input, records) in scenario.inputs.iter().zip(batch) {
            if !records.is_empty() {
                super::produce(topics.as_ref(), input.topic, records)?;
            }
        }
        Ok(())
    });
    let seconds = started.elapsed().as_secs_f64();
    // Results of the last events still travel: give them a moment.
    if paced.is_ok() {
        std::thread::sleep(Duration::from_secs(2));
    }
    done.store(true, Ordering::Relaxed);
    let latencies = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader thread panicked"));
    let broker_latencies = broker_reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader thread panicked"));
    let cpu = cpu_seconds() - cpu;
    ctx.runtime().stop();
    let _ = driver.join();
    paced?;
    let mut latencies = latencies??;
    let mut broker_latencies = broker_latencies??;
    let failed = ctx.runtime().processing_log().total();
    if failed > 0 {
        bail!(
            "{}: {failed} records failed; the run does not count",
            scenario.name
        );
    }
    if latencies.is_empty() {
        bail!(
            "{}: no result reached {} within 2 s of the last event",
            scenario.name,
            scenario.output_topic
        );
    }
    Ok(json!({
        "scenario": scenario.name,
        "mode": "kafka-latency",
        "events": events,
        "events_per_sec": (events as f64 / seconds).round(),
        "latency_ms": super::percentiles(&mut latencies),
        "broker_latency_ms": super::percentiles(&mut broker_latencies),
        "peak_rss_bytes": peak_rss_bytes(),
        "cpu_seconds": cpu,
        "limit_events_per_sec": (events as f64 / limit).round(),
        "limit": "raw JSON decode of the same events",
    }))
}

/// Reads `consumer` until `done` and it has nothing more, timing each
/// record against the time it carries.
fn spawn_reader(
    consumer: BaseConsumer,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<Vec<u32>>> {
    std::thread::spawn(move || -> Result<Vec<u32>> {
        let mut latencies = Vec::new();
        loop {
            match consumer.poll(Duration::from_millis(5)) {
                Some(Ok(message)) => {
                    let now = now_ms();
                    // Tombstones carry a replaced result's time.
                    if message.payload().is_some()
                        && let Some(t) = message.timestamp().to_millis()
                    {
                        latencies.push((now - t).max(0) as u32);
                    }
                }
                Some(Err(e)) => bail!("reading {}: {e}", consumer_topic(&consumer)),
                None if done.load(Ordering::Relaxed) => return Ok(latencies),
                None => {}
            }
        }
    })
}

fn consumer_topic(consumer: &BaseConsumer) -> String {
    consumer
        .assignment()
        .ok()
        .and_then(|a| a.elements().first().map(|e| e.topic().to_string()))
        .unwrap_or_default()
}

/// A bare consumer reading every partition of `topic` from the start.
fn assigned_consumer(servers: &str, topic: &str, group: &str) -> Result<BaseConsumer> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", format!("{group}-{}", now_ms()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()
        .context("creating a consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("reading the partitions of {topic}"))?;
    let mut assignment = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            assignment
                .add_partition_offset(topic, p.id(), Offset::Beginning)
                .context("assigning")?;
        }
    }
    if assignment.count() == 0 {
        bail!("topic {topic} has no partitions on {servers}");
    }
    consumer.assign(&assignment).context("assigning")?;
    Ok(consumer)
}

/// Seconds for a bare rdkafka consumer to read `events` records of
/// `topic` from the beginning, touching each payload and nothing else.
fn raw_consume_seconds(servers: &str, topic: &str, events: usize) -> Result<f64> {
    let consumer = assigned_consumer(servers, topic, "sluice-bench-raw")?;
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
