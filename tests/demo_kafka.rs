//! `sluice demo --kafka`: the product against a real broker (Tansu). The
//! generators write the match and agent topics through Kafka and every
//! projection of `queries/` fills from them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_connectors::kafka::tansu::TansuBroker;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The body of `GET path`, when the server answers 200.
fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    if !answer.starts_with("HTTP/1.1 200") {
        return None;
    }
    let body = answer.split_once("\r\n\r\n")?.1;
    // Chunked answers: keep the JSON between the chunk sizes.
    Some(match (body.find('['), body.rfind(']')) {
        (Some(start), Some(end)) if end > start => body[start..=end].to_string(),
        _ => body.to_string(),
    })
}

#[test]
fn demo_fills_every_projection_through_kafka() {
    let broker = TansuBroker::start().unwrap_or_else(|e| panic!("{e}"));
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let log_path = std::env::temp_dir().join(format!("sluice-demo-kafka-{port}.log"));
    let log = std::fs::File::create(&log_path).expect("log");
    let _demo = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["demo", "--port", &port.to_string(), "--backfill", "3m"])
            .args(["--kafka", &broker.bootstrap_servers()])
            .arg("--queries")
            .arg(root.join("queries"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sluice demo"),
    );
    let started = Instant::now();
    let mut empty: Vec<String> = Vec::new();
    while started.elapsed() < Duration::from_secs(150) {
        std::thread::sleep(Duration::from_secs(2));
        let Some(body) = get(port, "/projections") else {
            continue;
        };
        let Ok(Value::Array(all)) = serde_json::from_str::<Value>(&body) else {
            continue;
        };
        empty = all
            .iter()
            .filter(|p| p["rows"].as_u64().unwrap_or(0) == 0)
            .filter_map(|p| p["name"].as_str().map(String::from))
            .collect();
        if all.len() > 20 && empty.is_empty() {
            return;
        }
    }
    panic!(
        "projections still empty through Kafka: {empty:?}; demo log:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
}
