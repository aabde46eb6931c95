//! `sluice demo`: the whole product in one command. The server with its
//! web UI, the projections of `queries/`, and both event generators
//! (match game and agent orchestrator) writing live events, on embedded
//! topics or a Kafka broker.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Result;
use sluice_connectors::generator::GeneratorConfig;

use crate::generate::{self, parse_duration};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Port of the web UI and REST API (loopback only).
    #[arg(long, default_value_t = 8088)]
    pub port: u16,
    /// Kafka bootstrap servers; embedded topics when absent.
    #[arg(long)]
    pub kafka: Option<String>,
    /// The projections to load.
    #[arg(long, default_value = "queries")]
    pub queries: PathBuf,
    /// Match-game events per second.
    #[arg(long, default_value_t = 40.0)]
    pub match_rate: f64,
    /// Agent-orchestrator events per second.
    #[arg(long, default_value_t = 40.0)]
    pub agent_rate: f64,
    /// History written at start, so the UI has data at once.
    #[arg(long, value_parser = parse_duration, default_value = "15m")]
    pub backfill: Duration,
    /// Share of malformed records (they land in the processing log).
    #[arg(long, default_value_t = 0.002)]
    pub malformed_share: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn run(args: DemoArgs) -> Result<()> {
    let service_id = "default_".to_string();
    let topics = crate::backend(args.kafka.clone(), service_id.clone())?;
    let stop = Arc::new(AtomicBool::new(false));
    let port = args.port;
    let generators = |ctx: &Arc<sluice_sql::KsqlContext>| -> Result<()> {
        for (scenario, rate, seed) in [
            ("matches", args.match_rate, args.seed),
            ("agents", args.agent_rate, args.seed.wrapping_add(1)),
        ] {
            let config = GeneratorConfig {
                duration: None,
                backfill: args.backfill,
                malformed_share: args.malformed_share,
                seed,
            };
            // The threads run until the process ends; their progress goes
            // to the log (RUST_LOG=info).
            let _ = generate::spawn(
                ctx.runtime().backend().clone(),
                scenario,
                rate,
                config,
                stop.clone(),
                false,
            )?;
        }
        eprintln!(
            "sluice demo: generating match events ({}/s) and agent events ({}/s); open http://127.0.0.1:{port}/",
            args.match_rate, args.agent_rate
        );
        Ok(())
    };
    let options = crate::ServeOptions {
        port,
        queries: args.queries.clone(),
        config: sluice_server::ServerConfig::default(),
        tls: None,
        durability: None,
        cluster: None,
    };
    crate::serve(options, topics, &service_id, generators)
}
