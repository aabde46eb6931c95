//! `sluice bench`: end-to-end benchmarks of whole queries on embedded
//! topics, each next to the raw limit of its input path measured in the
//! same run (decoding the same JSON bytes into Arrow, nothing else).
//! Scenarios are synthetic (`scenarios.rs`) or Nexmark queries on the
//! `nexmark` crate's events (`nexmark.rs`).
//!
//! Two modes: maximum throughput (all events written first, then the
//! query runs them on this thread: one core) and latency at a fixed rate
//! (`--rate`: a producer paces events against the wall clock, the engine
//! runs on its own thread, a reader measures when each result becomes
//! visible in the output topic). With `--kafka` both run through a broker
//! instead (`kafka.rs`). `--charts` draws the results (`chart.rs`, PNG
//! through `png.rs`).

mod chart;
mod kafka;
mod limit;
mod nexmark;
mod png;
mod scenarios;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sluice_connectors::EmbeddedTopics;
use sluice_engine::topic::{Partitioning, Record, TopicBackend};
use sluice_sql::KsqlContext;

use scenarios::Scenario;

/// Records per batch, as the server runs queries.
const BATCH: usize = 8_192;
/// Event time of the first event; events are 1 ms apart in throughput mode.
const T0: i64 = 1_800_000_000_000;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Scenarios to run, comma separated: stateless, tumbling, hopping,
    /// session, stream-table-join, nexmark-q0, nexmark-q1, nexmark-q2,
    /// nexmark-q5, nexmark-q7, nexmark-q8; `nexmark` for all Nexmark
    /// queries, `all` for everything.
    #[arg(long)]
    pub scenario: String,
    /// Input events.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    /// Latency mode: produce at this many events per second and measure
    /// end-to-end latency; maximum throughput when absent.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Run through a Kafka broker (`host:port`, or `tansu` to start a
    /// private one): against raw rdkafka consume of the same topic, or
    /// with `--rate`, latency from producing an event to its result
    /// being readable from the output topic.
    #[arg(long)]
    pub kafka: Option<String>,
    /// With `--kafka`: a librdkafka property (`name=value`) for Sluice's
    /// own clients, repeatable (e.g. `linger.ms=0`), to see what the
    /// connector's defaults cost.
    #[arg(long = "kafka-property", value_name = "NAME=VALUE", requires = "kafka")]
    pub kafka_properties: Vec<String>,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also draw the results as charts into this folder, PNG and SVG
    /// (`throughput.*`, `latency.*`, `kafka.*` or `kafka-latency.*`).
    #[arg(long)]
    pub charts: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let mut chosen: Vec<&Scenario> = Vec::new();
    for name in args.scenario.split(',').map(str::trim) {
        match name {
            "all" => chosen.extend(scenarios::all()),
            "nexmark" => chosen.extend(nexmark::SCENARIOS),
            _ => match scenarios::find(name) {
                Some(s) => chosen.push(s),
                None => bail!(
                    "unknown scenario '{name}'; known: all, nexmark, {}",
                    scenarios::all()
                        .map(|s| s.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        }
    }
    if args.events == 0 {
        bail!("--events must be positive");
    }
    let mut properties = Vec::new();
    for p in &args.kafka_properties {
        match p.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                properties.push((name.trim().to_string(), value.trim().to_string()))
            }
            _ => bail!("--kafka-property takes NAME=VALUE, not '{p}'"),
        }
    }
    let mut results = Vec::new();
    for scenario in chosen {
        eprintln!(
            "{}: {} ({} events)",
            scenario.name, scenario.description, args.events
        );
        let result = match (args.rate, &args.kafka) {
            (Some(rate), _) if !(rate > 0.0 && rate.is_finite()) => {
                bail!("--rate must be a positive number")
            }
            (None, Some(servers)) => {
                kafka::throughput(scenario, args.events, servers, &properties)?
            }
            (None, None) => throughput(scenario, args.events)?,
            (Some(rate), Some(servers)) => {
                kafka::latency(scenario, args.events, rate, servers, &properties)?
            }
            (Some(rate), None) => latency(scenario, args.events, rate)?,
        };
        print_result(&result);
        results.push(result);
    }
    if let Some(dir) = &args.charts {
        write_charts(dir, &results, args.rate, args.kafka.is_some())?;
    }
    if let Some(path) = &args.json {
        let body = if results.len() == 1 {
            results[0].clone()
        } else {
            Value::Array(results)
        };
        std::fs::write(path, serde_json::to_string_pretty(&body)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The run's chart as SVG and PNG, named after the mode.
fn write_charts(
    dir: &std::path::Path,
    results: &[Value],
    rate: Option<f64>,
    kafka: bool,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (name, title) = match (rate, kafka) {
        (Some(rate), false) => (
            "latency",
            format!("End-to-end latency at {rate:.0} events/s (ms)"),
        ),
        (Some(rate), true) => (
            "kafka-latency",
            format!("Latency through Kafka at {rate:.0} events/s (ms)"),
        ),
        (None, true) => (
            "kafka",
            "Through Kafka: events/s against raw rdkafka consume".to_string(),
        ),
        (None, false) => (
            "throughput",
            "Events/s on one core, JSON in and out, against the raw decode limit".to_string(),
        ),
    };
    let (svg, png) = if rate.is_some() {
        (
            chart::latency(results, &title),
            chart::latency_png(results, &title)?,
        )
    } else {
        (
            chart::throughput(results, &title),
            chart::throughput_png(results, &title)?,
        )
    };
    for (file, bytes) in [
        (format!("{name}.svg"), svg.into_bytes()),
        (format!("{name}.png"), png),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("chart: {}", path.display());
    }
    Ok(())
}

fn print_result(r: &Value) {
    let rate = r["events_per_sec"].as_f64().unwrap_or(0.0);
    let limit = r["limit_events_per_sec"].as_f64().unwrap_or(0.0);
    let latency = &r["latency_ms"];
    let latency = if latency.is_null() {
        "latency: not measured in throughput mode (use --rate)".to_string()
    } else {
        format!(
            "latency ms p50 {} p99 {} p999 {}",
            latency["p50"], latency["p99"], latency["p999"]
        )
    };
    let against_limit = if r["mode"] == "throughput" {
        format!(
            "raw JSON decode limit {limit:.0}/s: {:.0}%",
            100.0 * rate / limit.max(1.0)
        )
    } else if r["mode"] == "kafka-throughput" {
        format!(
            "raw rdkafka consume {limit:.0}/s: {:.0}%",
            100.0 * rate / limit.max(1.0)
        )
    } else if r["mode"] == "kafka-latency" {
        let broker = &r["broker_latency_ms"];
        format!(
            "paced; the broker alone: p50 {} p99 {} p999 {}",
            broker["p50"], broker["p99"], broker["p999"]
        )
    } else {
        format!("paced; raw JSON decode limit {limit:.0}/s")
    };
    eprintln!(
        "  {rate:>10.0} events/s  ({against_limit})  {latency}  cpu {:.2}s  peak rss {} MiB",
        r["cpu_seconds"].as_f64().unwrap_or(0.0),
        r["peak_rss_bytes"].as_u64().unwrap_or(0) >> 20
    );
}

/// The scenario's statements on fresh embedded topics, its table preloaded.
fn prepare(scenario: &Scenario) -> Result<(Arc<EmbeddedTopics>, KsqlContext)> {
    let topics = Arc::new(EmbeddedTopics::new());
    let ctx = KsqlContext::with_backend(topics.clone(), BATCH);
    ctx.execute(scenario.sql)
        .map_err(|e| anyhow::anyhow!("{}: {}", scenario.name, e.error))?;
    if let Some((topic, rows)) = scenario.preload {
        produce(topics.as_ref(), topic, rows())?;
        ctx.runtime().run_until_idle();
    }
    Ok((topics, ctx))
}

fn produce(topics: &dyn TopicBackend, topic: &str, records: Vec<Record>) -> Result<()> {
    topics
        .produce(
            topic,
            records
                .into_iter()
                .map(|r| (Partitioning::Explicit(0), r))
                .collect(),
        )
        .with_context(|| format!("writing to {topic}"))?;
    Ok(())
}

/// Seconds to decode each input's records, the inputs one after another.
fn decode_limit(scenario: &Scenario, per_input: &[Vec<Record>]) -> f64 {
    scenario
        .inputs
        .iter()
        .zip(per_input)
        .filter(|(_, records)| !records.is_empty())
        .map(|(input, records)| limit::decode_limit_seconds((input.schema)(), records, BATCH))
        .sum()
}

/// Writes each input's records to its topic.
fn produce_inputs(
    topics: &dyn TopicBackend,
    scenario: &Scenario,
    per_input: Vec<Vec<Record>>,
) -> Result<()> {
    for (input, records) in scenario.inputs.iter().zip(per_input) {
        if !records.is_empty() {
            produce(topics, input.topic, records)?;
        }
    }
    Ok(())
}

/// All events written first; the query then runs them on this thread.
fn throughput(scenario: &Scenario, events: usize) -> Result<Value> {
    let records = scenario.generate(events, |i| T0 + i as i64);
    let limit = decode_limit(scenario, &records);
    let (topics, ctx) = prepare(scenario)?;
    produce_inputs(topics.as_ref(), scenario, records)?;
    let cpu = cpu_seconds();
    let started = Instant::now();
    ctx.runtime().run_until_idle();
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    let results = check_output(scenario, &topics, &ctx)?;
    Ok(json!({
        "scenario": scenario.name,
        "mode": "throughput",
        "events": events,
        "results": results,
        "events_per_sec": (events as f64 / seconds).round(),
        "latency_ms": null,
        "peak_rss_bytes": peak_rss_bytes(),
        "cpu_seconds": cpu,
        "limit_events_per_sec": (events as f64 / limit).round(),
    }))
}

/// Fails the run if a record failed or nothing was written; returns the
/// records written to the output topic.
fn check_output(scenario: &Scenario, topics: &EmbeddedTopics, ctx: &KsqlContext) -> Result<usize> {
    let failed = ctx.runtime().processing_log().total();
    if failed > 0 {
        bail!(
            "{}: {failed} records failed; the run does not count",
            scenario.name
        );
    }
    let out = topics
        .records(scenario.output_topic)
        .map(|r| r.len())
        .unwrap_or(0);
    if out == 0 {
        bail!(
            "{}: the query wrote nothing to {}",
            scenario.name,
            scenario.output_topic
        );
    }
    Ok(out)
}

/// Events produced at `rate` per second with the wall clock as event
/// time; latency is when a result shows up in the output topic minus the
/// event time it carries (the newest input it reflects).
fn latency(scenario: &Scenario, events: usize, rate: f64) -> Result<Value> {
    let limit = scaled_limit(scenario, events);
    let (topics, ctx) = prepare(scenario)?;
    let driver = ctx
        .runtime()
        .spawn()
        .context("starting the engine thread")?;
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let topics = topics.clone();
        let done = done.clone();
        let output = scenario.output_topic.to_string();
        std::thread::spawn(move || -> Result<Vec<u32>> {
            let mut consumer = topics.consumer(&output)?;
            let mut latencies = Vec::new();
            loop {
                let records = consumer.poll(BATCH)?;
                let now = now_ms();
                // Tombstones (a session merge retracting the session it
                // replaces) carry the old session's time, not an input's.
                latencies.extend(
                    records
                        .iter()
                        .filter(|r| r.record.value.is_some())
                        .map(|r| (now - r.record.timestamp).max(0) as u32),
                );
                if records.is_empty() {
                    if done.load(Ordering::Relaxed) {
                        return Ok(latencies);
                    }
                    topics.wait_for_data(Duration::from_millis(1));
                }
            }
        })
    };
    let cpu = cpu_seconds();
    let started = Instant::now();
    paced(scenario, events, rate, |batch| {
        produce_inputs(topics.as_ref(), scenario, batch)
    })?;
    let seconds = started.elapsed().as_secs_f64();
    // Let the engine drain what is left, then stop reading.
    std::thread::sleep(Duration::from_millis(500));
    done.store(true, Ordering::Relaxed);
    let mut latencies = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader thread panicked"))??;
    let cpu = cpu_seconds() - cpu;
    ctx.runtime().stop();
    let _ = driver.join();
    check_output(scenario, &topics, &ctx)?;
    Ok(json!({
        "scenario": scenario.name,
        "mode": "latency",
        "events": events,
        "events_per_sec": (events as f64 / seconds).round(),
        "latency_ms": percentiles(&mut latencies),
        "peak_rss_bytes": peak_rss_bytes(),
        "cpu_seconds": cpu,
        "limit_events_per_sec": (events as f64 / limit).round(),
    }))
}

/// The raw decode limit for `events` events, measured on at most 200,000
/// of them (a paced run of millions need not hold them all).
fn scaled_limit(scenario: &Scenario, events: usize) -> f64 {
    let sample = events.min(200_000);
    let records = scenario.generate(sample, |i| T0 + i as i64);
    decode_limit(scenario, &records) * events as f64 / sample as f64
}

/// Produces `events` events at `rate` per second against the wall clock,
/// each stamped with the time it is made, in batches of what is due.
fn paced(
    scenario: &Scenario,
    events: usize,
    rate: f64,
    mut send: impl FnMut(Vec<Vec<Record>>) -> Result<()>,
) -> Result<()> {
    let mut source = (scenario.events)();
    let started = Instant::now();
    let mut produced = 0;
    while produced < events {
        let due = ((started.elapsed().as_secs_f64() * rate) as usize).min(events);
        if due > produced {
            let now = now_ms();
            let mut batch = vec![Vec::new(); scenario.inputs.len()];
            for i in produced..due {
                let (input, record) = source(i, now);
                batch[input].push(record);
            }
            send(batch)?;
            produced = due;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    Ok(())
}

/// p50, p99 and p99.9 in milliseconds, and how many results were timed.
fn percentiles(latencies: &mut [u32]) -> Value {
    latencies.sort_unstable();
    let pct = |q: f64| -> u32 {
        let i = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len().max(1)) - 1;
        latencies.get(i).copied().unwrap_or(0)
    };
    json!({"p50": pct(0.5), "p99": pct(0.99), "p999": pct(0.999), "results": latencies.len()})
}

pub(crate) fn now_ms() -> i64 {
    sluice_connectors::generator::now_ms()
}

/// Peak resident set of this process (Linux `VmHWM`), 0 elsewhere.
pub(crate) fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
        })
        .map_or(0, |kb| kb * 1024)
}

/// User plus system CPU time of this process so far (Linux), 0 elsewhere.
pub(crate) fn cpu_seconds() -> f64 {
    // Fields 14 and 15 of /proc/self/stat, in clock ticks of 1/100 s
    // (USER_HZ, fixed at 100 on Linux); the command name (field 2) may
    // hold spaces, so count from its closing parenthesis.
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
