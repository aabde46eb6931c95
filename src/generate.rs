//! `sluice generate` and the generators of `sluice demo`: the product's
//! event generators ([`sluice_connectors::generator`]) with a command line.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sluice_connectors::generator::{self, GeneratorConfig, GeneratorStats};
use sluice_engine::topic::TopicBackend;

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// What to simulate: `matches` (the match game) or `agents` (the agent
    /// orchestrator).
    #[arg(long)]
    pub scenario: String,
    /// Target events per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// How long to run (`90s`, `10m`, `2h`); until Ctrl-C when absent.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Where to write: `kafka://host:port[,host:port]`, or `embedded`
    /// (in-process topics, only useful to measure the generator itself).
    #[arg(long, default_value = "embedded")]
    pub to: String,
    /// Seed: the same seed gives the same events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of records (0 to 1) written malformed, for the processing log.
    #[arg(long, default_value_t = 0.0)]
    pub malformed_share: f64,
    /// Event time starts this far back; that history is written at once.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub backfill: Duration,
}

/// `90s`, `10m`, `2h`, `500ms` or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 90s, 10m or 2h"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit '{unit}' in '{text}' (ms, s, m or h)")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

pub fn run(args: GenerateArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.malformed_share) {
        bail!("--malformed-share must be between 0 and 1");
    }
    if args.rate <= 0.0 {
        bail!("--rate must be positive");
    }
    let backend: Arc<dyn TopicBackend> = if args.to == "embedded" {
        Arc::new(sluice_connectors::EmbeddedTopics::new())
    } else if let Some(servers) = args.to.strip_prefix("kafka://") {
        let config = sluice_connectors::KafkaConfig::new(servers.to_string());
        Arc::new(
            sluice_connectors::KafkaTopics::connect(config)
                .with_context(|| format!("connecting to Kafka at {servers}"))?,
        )
    } else {
        bail!(
            "--to takes `embedded` or `kafka://host:port`, not '{}'",
            args.to
        );
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = stop.clone();
    ctrlc_on(move || stopper.store(true, std::sync::atomic::Ordering::Relaxed));
    let config = GeneratorConfig {
        duration: args.duration,
        backfill: args.backfill,
        malformed_share: args.malformed_share,
        seed: args.seed,
    };
    let stats = spawn(backend, &args.scenario, args.rate, config, stop, true)?
        .join()
        .map_err(|_| anyhow::anyhow!("the generator thread panicked"))??;
    eprintln!("done: {}", summary(&args.scenario, &stats));
    Ok(())
}

/// Starts a generator thread writing `scenario` into `backend`; progress
/// goes to stderr every second when `progress`, else to the info log.
pub fn spawn(
    backend: Arc<dyn TopicBackend>,
    scenario: &str,
    rate: f64,
    config: GeneratorConfig,
    stop: Arc<AtomicBool>,
    progress: bool,
) -> Result<JoinHandle<Result<GeneratorStats>>> {
    let start = generator::now_ms() - config.backfill.as_millis() as i64;
    let Some(mut simulation) = generator::scenario(scenario, rate, config.seed, start) else {
        bail!(
            "unknown scenario '{scenario}'; known: {}",
            generator::SCENARIOS.join(", ")
        );
    };
    let name = scenario.to_string();
    std::thread::Builder::new()
        .name(format!("generate-{name}"))
        .spawn(move || {
            let mut report = |stats: &GeneratorStats| {
                if progress {
                    eprintln!("{}", summary(&name, stats));
                } else {
                    tracing::info!("{}", summary(&name, stats));
                }
            };
            generator::run_generator(
                backend.as_ref(),
                simulation.as_mut(),
                &config,
                &stop,
                &mut report,
            )
            .with_context(|| format!("generating {name} events"))
        })
        .context("starting the generator thread")
}

/// One progress line: totals, rate, malformed count and event time.
pub fn summary(scenario: &str, stats: &GeneratorStats) -> String {
    let seconds = stats.elapsed.as_secs_f64().max(0.001);
    let topics: Vec<String> = stats
        .per_topic
        .iter()
        .map(|(topic, n)| format!("{topic}={n}"))
        .collect();
    format!(
        "{scenario}: {} events in {seconds:.1}s ({:.0}/s), {} malformed; event time {}; {}",
        stats.events,
        stats.events as f64 / seconds,
        stats.malformed,
        chrono::DateTime::from_timestamp_millis(stats.event_time_ms)
            .map(|t| t.format("%H:%M:%S").to_string())
            .unwrap_or_default(),
        topics.join(" ")
    )
}

/// Runs `f` on the first Ctrl-C, so a run stops cleanly with a summary.
fn ctrlc_on(f: impl FnOnce() + Send + 'static) {
    let _ = std::thread::Builder::new()
        .name("ctrl-c".into())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            if runtime.block_on(tokio::signal::ctrl_c()).is_ok() {
                f();
            }
        });
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_units_and_reject_nonsense() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
