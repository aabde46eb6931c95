//! `sluice bench`: end-to-end benchmarks of whole queries on embedded
//! topics, each next to the raw limit of its input path measured in the
//! same run (decoding the same JSON bytes into Arrow, nothing else).
//!
//! Two modes: maximum throughput (all events written first, then the
//! query runs them on this thread: one core) and latency at a fixed rate
//! (`--rate`: a producer paces events against the wall clock, the engine
//! runs on its own thread, a reader measures when each result becomes
//! visible in the output topic).

mod chart;
mod kafka;
mod limit;
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

use scenarios::{SCENARIOS, Scenario};

/// Records per batch, as the server runs queries.
const BATCH: usize = 8_192;
/// Event time of the first event; events are 1 ms apart in throughput mode.
const T0: i64 = 1_800_000_000_000;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Scenario to run, or `all`: stateless, tumbling, hopping, session,
    /// stream-table-join.
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
    /// private one), against raw rdkafka consume of the same topic.
    #[arg(long, conflicts_with = "rate")]
    pub kafka: Option<String>,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also draw the results as SVG charts into this folder
    /// (`throughput.svg` or `latency.svg`).
    #[arg(long)]
    pub charts: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let chosen: Vec<&Scenario> = if args.scenario == "all" {
        SCENARIOS.iter().collect()
    } else {
        match scenarios::find(&args.scenario) {
            Some(s) => vec![s],
            None => bail!(
                "unknown scenario '{}'; known: all, {}",
                args.scenario,
                SCENARIOS
                    .iter()
                    .map(|s| s.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    };
    if args.events == 0 {
        bail!("--events must be positive");
    }
    let mut results = Vec::new();
    for scenario in chosen {
        eprintln!(
            "{}: {} ({} events)",
            scenario.name, scenario.description, args.events
        );
        let result = match (args.rate, &args.kafka) {
            (None, Some(servers)) => kafka::throughput(scenario, args.events, servers)?,
            (None, None) => throughput(scenario, args.events)?,
            (Some(rate), _) if rate > 0.0 => latency(scenario, args.events, rate)?,
            (Some(_), _) => bail!("--rate must be positive"),
        };
        print_result(&result);
        results.push(result);
    }
    if let Some(dir) = &args.charts {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (file, svg) = match (args.rate, &args.kafka) {
            (Some(rate), _) => (
                "latency.svg",
                chart::latency(
                    &results,
                    &format!("End-to-end latency at {rate:.0} events/s (ms)"),
                ),
            ),
            (None, Some(_)) => (
                "kafka.svg",
                chart::throughput(
                    &results,
                    "Through Kafka: events/s against raw rdkafka consume",
                ),
            ),
            (None, None) => (
                "throughput.svg",
                chart::throughput(
                    &results,
                    "Events/s on one core, JSON in and out, against the raw decode limit",
                ),
            ),
        };
        let path = dir.join(file);
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("chart: {}", path.display());
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

/// All events written first; the query then runs them on this thread.
fn throughput(scenario: &Scenario, events: usize) -> Result<Value> {
    let records: Vec<Record> = (0..events)
        .map(|i| (scenario.event)(i, T0 + i as i64))
        .collect();
    let limit = limit::decode_limit_seconds((scenario.schema)(), &records, BATCH);
    let (topics, ctx) = prepare(scenario)?;
    produce(topics.as_ref(), scenario.input_topic, records)?;
    let cpu = cpu_seconds();
    let started = Instant::now();
    ctx.runtime().run_until_idle();
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    check_output(scenario, &topics, &ctx)?;
    Ok(json!({
        "scenario": scenario.name,
        "mode": "throughput",
        "events": events,
        "events_per_sec": (events as f64 / seconds).round(),
        "latency_ms": null,
        "peak_rss_bytes": peak_rss_bytes(),
        "cpu_seconds": cpu,
        "limit_events_per_sec": (events as f64 / limit).round(),
    }))
}

fn check_output(scenario: &Scenario, topics: &EmbeddedTopics, ctx: &KsqlContext) -> Result<()> {
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
    Ok(())
}

/// Events produced at `rate` per second with the wall clock as event
/// time; latency is when a result shows up in the output topic minus the
/// event time it carries (the newest input it reflects).
fn latency(scenario: &Scenario, events: usize, rate: f64) -> Result<Value> {
    let sample: Vec<Record> = (0..events.min(200_000))
        .map(|i| (scenario.event)(i, T0 + i as i64))
        .collect();
    let limit = limit::decode_limit_seconds((scenario.schema)(), &sample, BATCH) * events as f64
        / sample.len() as f64;
    drop(sample);
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
    let mut produced = 0;
    while produced < events {
        let due = ((started.elapsed().as_secs_f64() * rate) as usize).min(events);
        if due > produced {
            let now = now_ms();
            let batch: Vec<Record> = (produced..due).map(|i| (scenario.event)(i, now)).collect();
            produce(topics.as_ref(), scenario.input_topic, batch)?;
            produced = due;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
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
    latencies.sort_unstable();
    let pct = |q: f64| -> u32 {
        let i = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len().max(1)) - 1;
        latencies.get(i).copied().unwrap_or(0)
    };
    Ok(json!({
        "scenario": scenario.name,
        "mode": "latency",
        "events": events,
        "events_per_sec": (events as f64 / seconds).round(),
        "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "p999": pct(0.999), "results": latencies.len()},
        "peak_rss_bytes": peak_rss_bytes(),
        "cpu_seconds": cpu,
        "limit_events_per_sec": (events as f64 / limit).round(),
    }))
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
