//! The `sluice` command: wires the engine, the SQL layer and the
//! connectors together.

mod conformance;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sluice_connectors::EmbeddedTopics;
use sluice_sql::KsqlContext;

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "A streaming SQL engine for ksqlDB's dialect, on Arrow and DataFusion"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run ksqlDB's query-validation tests and report pass rates.
    Conformance(conformance::ConformanceArgs),
    /// Execute a .sql script on embedded topics and print each result.
    Run {
        /// The script: ksqlDB statements separated by ';'.
        file: PathBuf,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Conformance(args) => conformance::run(&args),
        Command::Run { file } => run_script(&file),
    }
}

fn run_script(file: &PathBuf) -> Result<()> {
    let sql =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let ctx = KsqlContext::with_backend(Arc::new(EmbeddedTopics::new()), 1024);
    match ctx.execute(&sql) {
        Ok(results) => {
            for r in results {
                println!("{r:?}");
            }
            ctx.runtime().run_until_idle();
            Ok(())
        }
        Err(e) => anyhow::bail!(
            "{}:{}:{}: {}\n  in: {}",
            file.display(),
            e.line,
            e.column,
            e.error,
            e.statement
        ),
    }
}
