//! `sluice demo --kafka`: the product against a real broker (Tansu). The
//! generators write the match and agent topics through Kafka and every
//! projection of `queries/` fills from them.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::KillOnDrop;

use serde_json::Value;
use sluice_connectors::kafka::tansu::TansuBroker;

/// The JSON body of `GET path`, when the server answers 200.
fn get_json(port: u16, path: &str) -> Option<String> {
    let answer = common::get(port, path)?;
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
    let port = common::free_port();
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
        let Some(body) = get_json(port, "/projections") else {
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
