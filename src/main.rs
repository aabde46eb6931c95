//! The `sluice` command: wires the engine, the SQL layer and the
//! connectors together.

mod bench;
mod conformance;
mod demo;
mod docs;
mod generate;
mod shell;

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
    /// The demo: server, web UI, the product's queries and both event
    /// generators, on embedded topics (or a Kafka broker).
    Demo(demo::DemoArgs),
    /// Benchmark whole queries against the raw limit of their input.
    Bench(bench::BenchArgs),
    /// Generate documentation from the engine (the function reference).
    Docs(docs::DocsArgs),
    /// Generate the product's events (match game or agent orchestrator).
    Generate(generate::GenerateArgs),
    /// An interactive SQL shell over the REST API of Sluice or ksqlDB.
    Shell(shell::ShellArgs),
    /// Serve the ksqlDB REST API, on embedded topics or a Kafka broker.
    Serve {
        /// Port to listen on (loopback only).
        #[arg(long, default_value_t = 8088)]
        port: u16,
        /// Folder of .sql files to execute at start, in name order.
        #[arg(long, default_value = "queries")]
        queries: PathBuf,
        /// Kafka bootstrap servers (`host:port,...`); embedded topics when
        /// absent.
        #[arg(long)]
        kafka: Option<String>,
        /// ksqlDB's `ksql.service.id`: names consumer groups and internal
        /// topics.
        #[arg(long, default_value = "default_")]
        service_id: String,
        /// Push queries running at once; more are refused with HTTP 429.
        #[arg(long, default_value_t = 100)]
        max_push_queries: usize,
        /// Rows buffered per push client; a client further behind is cut
        /// off with an error so the engine never waits for it.
        #[arg(long, default_value_t = 10_000)]
        push_buffer_rows: usize,
        /// Largest request body accepted, in bytes.
        #[arg(long, default_value_t = sluice_server::MAX_REQUEST_BYTES)]
        max_request_bytes: usize,
        /// Rows of each stream kept for pull queries (the newest).
        #[arg(long, default_value_t = 1_000_000)]
        stream_rows: usize,
        /// Require HTTP basic auth with these credentials, `user:password`.
        #[arg(long, conflicts_with = "auth_bearer")]
        auth_basic: Option<String>,
        /// Require this bearer token.
        #[arg(long)]
        auth_bearer: Option<String>,
        /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Make the server durable here: executed statements are kept in
        /// `DIR/catalog` and replayed at start, and every persistent query
        /// checkpoints its state and source offsets under `DIR/<query id>`
        /// and resumes from there after a restart or crash. Not in a
        /// cluster: there the command topic holds the catalog and
        /// --shared-state-dir the checkpoints.
        #[arg(long, value_name = "DIR", conflicts_with = "shared_state_dir")]
        state_dir: Option<PathBuf>,
        /// Milliseconds between a query's checkpoints (with --state-dir);
        /// a crash reprocesses at most this much input.
        #[arg(long, value_name = "MS", default_value_t = 5_000)]
        checkpoint_interval: u64,
        /// Join the cluster of the servers with the same --service-id on
        /// the same --kafka brokers: they share every persistent query,
        /// each processing the input partitions its consumer group gives
        /// it, and checkpoint each partition's state here, a directory
        /// every member reaches, so a partition's next owner resumes it.
        /// The members share their catalog through the command topic
        /// `_sluice-<service id>-command_topic`: a statement sent to any
        /// of them is applied by all, and a member (re)started reads the
        /// catalog from there.
        #[arg(long, value_name = "DIR", requires = "kafka")]
        shared_state_dir: Option<PathBuf>,
        /// The URL other members and clients reach this server at (with
        /// --shared-state-dir); `http://127.0.0.1:<port>` by default.
        #[arg(long, value_name = "URL", requires = "shared_state_dir")]
        advertised_url: Option<String>,
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
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Docs(args) => docs::run(args),
        Command::Shell(args) => {
            if shell::run(args)? {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
        Command::Serve {
            port,
            queries,
            max_push_queries,
            push_buffer_rows,
            max_request_bytes,
            stream_rows,
            auth_basic,
            auth_bearer,
            kafka,
            service_id,
            tls_cert,
            tls_key,
            state_dir,
            checkpoint_interval,
            shared_state_dir,
            advertised_url,
        } => {
            let auth = match (auth_basic, auth_bearer) {
                (Some(basic), _) => {
                    let Some((user, password)) = basic.split_once(':') else {
                        anyhow::bail!("--auth-basic takes user:password");
                    };
                    Some(sluice_server::auth::Auth::Basic {
                        user: user.to_string(),
                        password: password.to_string(),
                    })
                }
                (None, Some(token)) => Some(sluice_server::auth::Auth::Bearer { token }),
                (None, None) => None,
            };
            let config = sluice_server::ServerConfig {
                max_request_bytes,
                push: sluice_server::push::PushLimits {
                    max_queries: max_push_queries,
                    buffer_rows: push_buffer_rows,
                },
                stream_row_limit: stream_rows,
                auth,
            };
            // A bad certificate fails the start, before anything runs.
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(sluice_server::tls::load(&cert, &key)?),
                _ => None,
            };
            let durability = state_dir.map(|dir| {
                (
                    dir,
                    std::time::Duration::from_millis(checkpoint_interval.max(1)),
                )
            });
            let interval = std::time::Duration::from_millis(checkpoint_interval.max(1));
            let cluster = shared_state_dir.map(|shared_dir| Cluster {
                config: sluice_engine::query::distributed::ClusterConfig {
                    shared_dir,
                    interval,
                    group_prefix: format!("_sluice-{service_id}"),
                },
                advertised_url: advertised_url
                    .unwrap_or_else(|| format!("http://127.0.0.1:{port}")),
            });
            let topics = backend(kafka, service_id.clone())?;
            let options = ServeOptions {
                port,
                queries,
                config,
                tls,
                durability,
                cluster,
            };
            serve(options, topics, &service_id, |_| Ok(()))
        }
    }
}

/// Executes every `.sql` file of `dir` in name order; a missing folder
/// loads nothing. Statements whose effect a replayed catalog already holds
/// (a `CREATE` of an existing source, an `INSERT INTO` identical to a
/// running query) are skipped, so the folder can be loaded at every start.
fn load_queries(ctx: &KsqlContext, dir: &std::path::Path) -> Result<usize> {
    if !dir.exists() {
        return Ok(0);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    for file in &files {
        let sql =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let (_, skipped) = ctx.execute_new(&sql).map_err(|e| script_error(file, &e))?;
        tracing::info!(
            "loaded {} ({skipped} statement(s) already in the catalog)",
            file.display()
        );
    }
    Ok(files.len())
}

/// Embedded topics, or the Kafka brokers given.
fn backend(
    kafka: Option<String>,
    service_id: String,
) -> Result<Arc<dyn sluice_engine::topic::TopicBackend>> {
    Ok(match kafka {
        None => Arc::new(EmbeddedTopics::new()),
        Some(servers) => {
            let mut config = sluice_connectors::KafkaConfig::new(servers.clone());
            config.service_id = service_id;
            // The runtime's loop naps when a pass finds nothing: a poll
            // waiting on one empty consumer would hold up all the others.
            config.poll_wait = std::time::Duration::ZERO;
            Arc::new(
                sluice_connectors::KafkaTopics::connect(config)
                    .with_context(|| format!("connecting to Kafka at {servers}"))?,
            )
        }
    })
}

/// Runs the server until it stops; `started` runs once the queries are
/// loaded and the engine runs (the demo starts its generators there).
/// How `serve` runs, besides where its topics are.
struct ServeOptions {
    port: u16,
    queries: PathBuf,
    config: sluice_server::ServerConfig,
    tls: Option<Arc<sluice_server::rustls::ServerConfig>>,
    /// The state directory and the checkpoint interval.
    durability: Option<(PathBuf, std::time::Duration)>,
    /// Set when this server is a member of a cluster.
    cluster: Option<Cluster>,
}

/// How this server takes part in a cluster.
struct Cluster {
    config: sluice_engine::query::distributed::ClusterConfig,
    advertised_url: String,
}

fn serve(
    options: ServeOptions,
    topics: Arc<dyn sluice_engine::topic::TopicBackend>,
    service_id: &str,
    started: impl FnOnce(&Arc<KsqlContext>) -> Result<()>,
) -> Result<()> {
    let ServeOptions {
        port,
        queries,
        config,
        tls,
        durability,
        cluster,
    } = options;
    let queries = queries.as_path();
    let ctx = Arc::new(KsqlContext::with_backend(topics, 1024));
    // Failed records also go to a topic, as ksqlDB's processing log does.
    let log_topic = format!("{service_id}ksql_processing_log");
    let forwarder = sluice_engine::processing_log::ProcessingLogTopic::new(
        ctx.runtime().processing_log().clone(),
        ctx.runtime().backend().clone(),
        &log_topic,
    )
    .with_context(|| format!("creating the processing log topic {log_topic}"))?;
    ctx.runtime().observe(Arc::new(forwarder));
    // And, as ksqlDB's `ksql.logging.processing.stream.auto.create` does, a
    // stream over it, so the log can be queried (and the UI shows it).
    ctx.execute(&processing_log_stream(&log_topic))
        .map_err(|e| anyhow::anyhow!("creating KSQL_PROCESSING_LOG: {}", e.error))?;
    // Projections and push queries observe the runtime from the start, so
    // they see the output of every query loaded below.
    let mut state = sluice_server::AppState::new(ctx.clone(), "sluice", config);
    if let Some(cluster) = &cluster {
        std::fs::create_dir_all(&cluster.config.shared_dir).with_context(|| {
            format!(
                "creating the shared state directory {}",
                cluster.config.shared_dir.display()
            )
        })?;
        ctx.runtime().enable_cluster(cluster.config.clone());
        let members = sluice_server::cluster::Members::start(
            ctx.runtime().clone(),
            service_id,
            &cluster.advertised_url,
        )
        .context("joining the cluster")?;
        // Topics a statement leaves unused are deleted once every member
        // has let go of them, as their heartbeats tell.
        members.watch_commands(&ctx);
        ctx.set_release_gate(members.clone());
        state = state.with_cluster(members);
        // The catalog as the cluster has it, before --queries adds to it.
        let topic = sluice_sql::command_topic::command_topic_name(service_id);
        let applied = ctx
            .open_command_topic(&topic, &cluster.advertised_url)
            .with_context(|| format!("reading the command topic {topic}"))?;
        eprintln!("sluice: {applied} command(s) applied from {topic}");
        eprintln!(
            "sluice: cluster member {} (service id {service_id}), shared state in {}",
            cluster.advertised_url,
            cluster.config.shared_dir.display()
        );
    }
    if cluster.is_none() {
        state.release_topics_when_unread();
    }
    if let Some((dir, interval)) = &durability {
        let replayed = ctx
            .open_state_dir(dir, *interval)
            .with_context(|| format!("restoring from the state directory {}", dir.display()))?;
        eprintln!(
            "sluice: {replayed} statement(s) replayed from {}",
            dir.display()
        );
    }
    let loaded = load_queries(&ctx, queries)?;
    let driver = ctx
        .runtime()
        .spawn()
        .context("starting the query runtime")?;
    started(&ctx)?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!(
        "sluice: {loaded} query file(s) loaded; ksqlDB REST API and web UI on {scheme}://{addr}"
    );
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = runtime.block_on(async {
        let served = async {
            match tls {
                Some(tls) => sluice_server::serve_tls(addr, state, tls).await,
                None => sluice_server::serve(addr, state).await,
            }
        };
        tokio::select! {
            served = served => served.map_err(anyhow::Error::from),
            signal = shutdown_signal() => signal,
        }
    });
    // The driver takes a last checkpoint of every query as it stops.
    ctx.runtime().stop();
    let _ = driver.join();
    result
}

/// Resolves on Ctrl-C or SIGTERM, so a stopped server checkpoints first.
async fn shutdown_signal() -> Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        c = tokio::signal::ctrl_c() => c.context("listening for Ctrl-C")?,
        _ = terminate.recv() => {}
    }
    eprintln!("sluice: stopping");
    Ok(())
}

/// `KSQL_PROCESSING_LOG` over the processing-log topic, with the fields
/// [`sluice_engine::processing_log::ProcessingLogTopic`] writes.
fn processing_log_stream(topic: &str) -> String {
    let error = "STRUCT<errorMessage STRING, record STRING, topic STRING, `partition` INT, \
                 `offset` BIGINT, cause ARRAY<STRING>>";
    format!(
        "CREATE STREAM IF NOT EXISTS KSQL_PROCESSING_LOG (logger STRING, level STRING, `time` BIGINT, \
         message STRUCT<`type` INT, deserializationError {error}, recordProcessingError {error}, \
         serializationError {error}>) WITH (kafka_topic='{topic}', value_format='JSON');"
    )
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
        Err(e) => Err(script_error(file, &e)),
    }
}

/// `file:line:column: message`, with the statement that failed.
fn script_error(file: &std::path::Path, e: &sluice_sql::StatementError) -> anyhow::Error {
    anyhow::anyhow!(
        "{}:{}:{}: {}\n  in: {}",
        file.display(),
        e.line,
        e.column,
        e.error,
        e.statement
    )
}
