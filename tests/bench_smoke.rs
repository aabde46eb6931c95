//! `sluice bench` runs every scenario end to end (the Nexmark queries
//! included, so none of them can stop planning unnoticed) and writes the
//! JSON report and the charts the benchmarks issue specifies. Correctness
//! of the run, not speed: timings are for BENCHMARKS.md, never asserted
//! here.

use std::process::Command;

use serde_json::Value;

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

#[test]
fn every_scenario_runs_and_reports() {
    let json = std::env::temp_dir().join(format!("sluice-bench-{}.json", std::process::id()));
    let charts = std::env::temp_dir().join(format!("sluice-bench-charts-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["bench", "--scenario", "all", "--events", "20000", "--json"])
        .arg(&json)
        .arg("--charts")
        .arg(&charts)
        .output()
        .expect("run sluice bench");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("report")).expect("json");
    let runs = report.as_array().expect("one result per scenario");
    let names: Vec<&str> = runs.iter().filter_map(|r| r["scenario"].as_str()).collect();
    assert_eq!(
        names,
        [
            "stateless",
            "tumbling",
            "hopping",
            "session",
            "stream-table-join",
            "nexmark-q0",
            "nexmark-q1",
            "nexmark-q2",
            "nexmark-q5",
            "nexmark-q7",
            "nexmark-q8",
        ]
    );
    for r in runs {
        assert_eq!(r["events"], 20000);
        for field in [
            "events_per_sec",
            "limit_events_per_sec",
            "cpu_seconds",
            "peak_rss_bytes",
        ] {
            assert!(r[field].as_f64().is_some_and(|v| v > 0.0), "{field} in {r}");
        }
    }
    let _ = std::fs::remove_file(&json);
    let png = std::fs::read(charts.join("throughput.png")).expect("the PNG chart");
    assert_eq!(png[..8], PNG_SIGNATURE);
    // Width and height from the header: a chart, not an empty image.
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert!(width >= 500 && height >= 300, "{width}x{height}");
    let svg = std::fs::read_to_string(charts.join("throughput.svg")).expect("the SVG chart");
    assert!(svg.contains("nexmark-q8"), "{svg}");
    let _ = std::fs::remove_dir_all(&charts);
}

/// Each Nexmark scenario alone, with few events: every query must plan,
/// run without failed records and write results.
#[test]
fn nexmark_scenarios_run_with_few_events() {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["bench", "--scenario", "nexmark", "--events", "3000"])
        .output()
        .expect("run sluice bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    for q in ["q0", "q1", "q2", "q5", "q7", "q8"] {
        assert!(
            stderr.contains(&format!("nexmark-{q}: Nexmark {q} ")),
            "{stderr}"
        );
    }
    assert_eq!(stderr.matches("events/s").count(), 6, "{stderr}");
}

/// Latency through a private Tansu broker: percentiles of results read
/// back from the output topic.
#[test]
fn kafka_latency_mode_reports_percentiles() {
    let json = std::env::temp_dir().join(format!("sluice-bench-kafka-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "bench",
            "--scenario",
            "stateless",
            "--events",
            "2000",
            "--rate",
            "2000",
            "--kafka",
            "tansu",
            "--json",
        ])
        .arg(&json)
        .output()
        .expect("run sluice bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("report")).expect("json");
    assert_eq!(report["mode"], "kafka-latency");
    // The filter keeps 49% of the events; every result is timed.
    assert_eq!(report["latency_ms"]["results"], 980, "{report}");
    assert!(report["latency_ms"]["p99"].as_u64().is_some(), "{report}");
    let _ = std::fs::remove_file(&json);
}

#[test]
fn latency_mode_reports_percentiles() {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "bench",
            "--scenario",
            "tumbling",
            "--events",
            "2000",
            "--rate",
            "4000",
        ])
        .output()
        .expect("run sluice bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("latency ms p50"), "{stderr}");
}

#[test]
fn unknown_scenario_is_an_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["bench", "--scenario", "nope"])
        .output()
        .expect("run sluice bench");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown scenario 'nope'"));
}
