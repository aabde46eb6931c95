//! `sluice bench` runs every scenario end to end and writes the JSON
//! report the benchmarks issue specifies. Correctness of the run, not
//! speed: timings are for BENCHMARKS.md, never asserted here.

use std::process::Command;

use serde_json::Value;

#[test]
fn every_scenario_runs_and_reports() {
    let json = std::env::temp_dir().join(format!("sluice-bench-{}.json", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["bench", "--scenario", "all", "--events", "20000", "--json"])
        .arg(&json)
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
            "stream-table-join"
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
