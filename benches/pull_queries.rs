//! Pull queries by key over HTTP: a 1,000,000-row table, 64 concurrent
//! clients on keep-alive HTTP/1.1 connections, each sending
//! `SELECT * FROM users WHERE id = <random key>;` to `/query-stream` (or
//! `/query`) and waiting for the answer before the next.
//!
//! The server (axum on a 2-worker tokio runtime, the engine's runtime
//! thread idle beside it) and the load generator (one thread: a minimal
//! HTTP/1.1 client, so that it takes as little of the machine as it can)
//! run in this one process and share the machine's cores. Every answer is
//! checked: status 200 and the row of the key asked for.
//!
//! `cargo bench --bench pull_queries`. Settings (environment):
//! `SLUICE_BENCH_TABLE_ROWS` (1,000,000), `SLUICE_BENCH_CLIENTS` (64),
//! `SLUICE_BENCH_SECONDS` (10, after 2 s of warm-up),
//! `SLUICE_BENCH_ENDPOINT` (`/query-stream` or `/query`),
//! `SLUICE_BENCH_SCAN_SECONDS` (3: the same load with a predicate that is
//! not a key lookup, `id = k OR id = k`, which plans DataFusion SQL over
//! the whole table; 0 skips it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, Int64Array};
use sluice_connectors::EmbeddedTopics;
use sluice_engine::topic::{Partitioning, Record, TopicBackend};
use sluice_server::{AppState, ServerConfig};
use sluice_sql::KsqlContext;
use tokio::net::TcpStream;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Loads `rows` users; returns the seconds until they are materialized.
fn load(ctx: &KsqlContext, topics: &EmbeddedTopics, rows: usize) -> f64 {
    ctx.execute(
        "CREATE TABLE users (id BIGINT PRIMARY KEY, name STRING, region STRING, score INT)
           WITH (kafka_topic='users', value_format='JSON', partitions=4);",
    )
    .expect("create table");
    let source = ctx.source("USERS").expect("users");
    let codec = source.codec();
    let regions = ["north", "south", "east", "west"];
    let mut records = Vec::with_capacity(rows);
    for chunk in (0..rows as i64).collect::<Vec<_>>().chunks(65_536) {
        let keys: ArrayRef = Arc::new(Int64Array::from(chunk.to_vec()));
        for (row, id) in chunk.iter().enumerate() {
            let key = codec
                .encode_key(std::slice::from_ref(&keys), row)
                .expect("key");
            let value = format!(
                r#"{{"NAME":"user-{id}","REGION":"{}","SCORE":{}}}"#,
                regions[(*id as usize) % 4],
                id % 1000
            );
            records.push((
                Partitioning::ByKey,
                Record {
                    key: key.map(bytes::Bytes::from),
                    value: Some(bytes::Bytes::from(value)),
                    timestamp: 1 + *id,
                    headers: vec![],
                },
            ));
        }
    }
    topics.produce("users", records).expect("produce");
    let started = Instant::now();
    ctx.runtime().run_until_idle();
    started.elapsed().as_secs_f64()
}

/// Seconds to read and publish `updates` changed rows of the loaded table,
/// averaged over a few passes: what a pass costs once the table is big.
fn update_pass(ctx: &KsqlContext, topics: &EmbeddedTopics, rows: usize, updates: usize) -> f64 {
    let source = ctx.source("USERS").expect("users");
    let codec = source.codec();
    let passes = 5;
    let mut total = 0.0;
    for pass in 0..passes {
        let ids: Vec<i64> = (0..updates)
            .map(|i| ((i * 7919 + pass * 104_729) % rows) as i64)
            .collect();
        let keys: ArrayRef = Arc::new(Int64Array::from(ids.clone()));
        let records = ids
            .iter()
            .enumerate()
            .map(|(row, id)| {
                let key = codec
                    .encode_key(std::slice::from_ref(&keys), row)
                    .expect("key");
                let value = format!(r#"{{"NAME":"user-{id}","REGION":"moved","SCORE":{pass}}}"#);
                (
                    Partitioning::ByKey,
                    Record {
                        key: key.map(bytes::Bytes::from),
                        value: Some(bytes::Bytes::from(value)),
                        timestamp: 2_000_000 + *id,
                        headers: vec![],
                    },
                )
            })
            .collect();
        topics.produce("users", records).expect("produce");
        let started = Instant::now();
        ctx.runtime().run_until_idle();
        total += started.elapsed().as_secs_f64();
    }
    total / passes as f64
}

/// A keep-alive HTTP/1.1 connection that sends one request at a time.
struct Client {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            buffer: Vec::with_capacity(4096),
        }
    }

    async fn write_all(&self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            self.stream.writable().await.expect("writable");
            match self.stream.try_write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("write: {e}"),
            }
        }
    }

    /// Reads more of the response into the buffer.
    async fn fill(&mut self) {
        let mut chunk = [0u8; 8192];
        loop {
            self.stream.readable().await.expect("readable");
            match self.stream.try_read(&mut chunk) {
                Ok(0) => panic!("the server closed the connection"),
                Ok(n) => {
                    self.buffer.extend_from_slice(&chunk[..n]);
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// POSTs `body` to `path`; returns the status line and the body.
    async fn post(&mut self, path: &str, body: &str) -> (String, String) {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.write_all(request.as_bytes()).await;
        let head_end = loop {
            if let Some(i) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await;
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .expect("a Content-Length");
        while self.buffer.len() < head_end + length {
            self.fill().await;
        }
        let body = String::from_utf8_lossy(&self.buffer[head_end..head_end + length]).into_owned();
        self.buffer.drain(..head_end + length);
        let status = head.lines().next().unwrap_or_default().to_string();
        (status, body)
    }
}

/// The request body asking for `id`, and a text only its answer holds.
fn request(endpoint: &str, scan: bool, id: u64) -> (String, String) {
    let sql = if scan {
        format!("SELECT * FROM users WHERE id = {id} OR id = {id};")
    } else {
        format!("SELECT * FROM users WHERE id = {id};")
    };
    let body = if endpoint == "/query" {
        format!(r#"{{"ksql":"{sql}","streamsProperties":{{}}}}"#)
    } else {
        format!(r#"{{"sql":"{sql}","properties":{{}}}}"#)
    };
    (body, format!("\"user-{id}\""))
}

struct Measured {
    queries: usize,
    seconds: f64,
    /// Latencies in microseconds, sorted.
    latencies: Vec<u32>,
}

impl Measured {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies[i]) / 1000.0
    }
}

/// Runs `clients` closed-loop clients for `warmup` then `seconds`.
fn drive(
    addr: std::net::SocketAddr,
    endpoint: &'static str,
    scan: bool,
    clients: usize,
    rows: u64,
    warmup: Duration,
    seconds: Duration,
) -> Measured {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    runtime.block_on(async move {
        let measuring = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (measuring, stop) = (measuring.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut client = Client::connect(addr).await;
                let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (c as u64 + 1);
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let id = seed % rows;
                    let (body, expected) = request(endpoint, scan, id);
                    let started = Instant::now();
                    let (status, answer) = client.post(endpoint, &body).await;
                    let micros = started.elapsed().as_micros();
                    assert!(status.contains(" 200 "), "{status}: {answer}");
                    assert!(answer.contains(&expected), "{id}: {answer}");
                    if measuring.load(Ordering::Relaxed) {
                        latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
                    }
                }
                latencies
            }));
        }
        tokio::time::sleep(warmup).await;
        measuring.store(true, Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(seconds).await;
        measuring.store(false, Ordering::Relaxed);
        let elapsed = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await.expect("client"));
        }
        latencies.sort_unstable();
        Measured {
            queries: latencies.len(),
            seconds: elapsed,
            latencies,
        }
    })
}

fn report(label: &str, m: &Measured) {
    println!(
        "  {label}: {:>8.0} queries/s   p50 {:.2} ms   p99 {:.2} ms   p99.9 {:.2} ms   max {:.2} ms   ({} queries in {:.1} s)",
        m.queries as f64 / m.seconds,
        m.percentile(0.5),
        m.percentile(0.99),
        m.percentile(0.999),
        m.percentile(1.0),
        m.queries,
        m.seconds
    );
}

fn main() {
    let rows = env("SLUICE_BENCH_TABLE_ROWS", 1_000_000);
    let clients = env("SLUICE_BENCH_CLIENTS", 64);
    let seconds = env("SLUICE_BENCH_SECONDS", 10) as u64;
    let scan_seconds = env("SLUICE_BENCH_SCAN_SECONDS", 3) as u64;
    let endpoint: &'static str = match std::env::var("SLUICE_BENCH_ENDPOINT").as_deref() {
        Ok("/query") => "/query",
        _ => "/query-stream",
    };
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "pull queries by key, {rows}-row table, {clients} clients on {endpoint}, HTTP/1.1 keep-alive; \
         server and load generator share this machine's {cores} cores"
    );
    let topics = Arc::new(EmbeddedTopics::new());
    let ctx = Arc::new(KsqlContext::with_backend(topics.clone(), 1024));
    let state = AppState::new(ctx.clone(), "bench", ServerConfig::default());
    let load_seconds = load(&ctx, &topics, rows);
    let materialized = state.materializer.snapshots(&["USERS".into()]);
    let found = materialized[0].as_ref().map_or(0, |s| s.num_rows());
    assert_eq!(found, rows, "rows materialized");
    println!("  table load and index:  {load_seconds:.2} s");
    let pass = update_pass(&ctx, &topics, rows, 4096);
    println!(
        "  a pass of 4096 updates: {:.1} ms (decode, index, publish)",
        pass * 1000.0
    );
    let engine = ctx.runtime().spawn().expect("engine runtime");

    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("server runtime");
    let listener = server
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let app = sluice_server::router(state.clone());
    server.spawn(async move { axum::serve(listener, app).await });

    let m = drive(
        addr,
        endpoint,
        false,
        clients,
        rows as u64,
        Duration::from_secs(2),
        Duration::from_secs(seconds),
    );
    report("key lookups          ", &m);
    println!(
        "  answered by the index: {} of {} (the rest planned in full)",
        state.lookups.answered(),
        state.pull_counter.load(Ordering::Relaxed) - 1
    );
    println!(
        "{{\"scenario\":\"pull-by-key\",\"table_rows\":{rows},\"clients\":{clients},\"queries_per_sec\":{:.0},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
        m.queries as f64 / m.seconds,
        m.percentile(0.5),
        m.percentile(0.99)
    );
    if scan_seconds > 0 {
        let m = drive(
            addr,
            endpoint,
            true,
            clients,
            rows as u64,
            Duration::from_secs(1),
            Duration::from_secs(scan_seconds),
        );
        report("same, full-scan plan ", &m);
    }
    ctx.runtime().stop();
    let _ = engine.join();
    server.shutdown_timeout(Duration::from_secs(1));
}
