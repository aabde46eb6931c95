//! The web UI in a real headless Chromium: starts `sluice demo` (server,
//! projections, both generators on embedded topics) on a free port and
//! runs `tests/browser/ui.test.mjs` (playwright-core) against it.
//! Screenshots land in `target/ui-screenshots/` of the clone.
//!
//! Needs Node.js, Debian's Chromium and `npm ci` in `tests/browser`;
//! `bash scripts/test.sh` installs what is missing. Without them this test
//! fails and says so: it never passes without having run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{KillOnDrop, free_port, healthy};

fn require(what: &str, ok: bool) {
    assert!(
        ok,
        "{what} is missing: run `bash scripts/test.sh`, which installs it (Debian chromium, \
         Node.js, `npm ci` in tests/browser)"
    );
}

#[test]
fn web_ui_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let browser_dir = root.join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    require("Chromium", Path::new(&chromium).exists());
    require(
        "Node.js",
        Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
    );
    require(
        "playwright-core",
        browser_dir.join("node_modules/playwright-core").exists(),
    );

    let port = free_port();
    let log_path = std::env::temp_dir().join(format!("sluice-demo-{port}.log"));
    let log = std::fs::File::create(&log_path).expect("demo log");
    let demo = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["demo", "--port", &port.to_string(), "--backfill", "10m"])
            .arg("--queries")
            .arg(root.join("queries"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sluice demo"),
    );
    let started = Instant::now();
    while !healthy(port) {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the demo did not come up; its log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let screenshots: PathBuf = root.join("target/ui-screenshots");
    let output = Command::new("node")
        .arg("ui.test.mjs")
        .current_dir(&browser_dir)
        .env("SLUICE_URL", format!("http://127.0.0.1:{port}"))
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node");
    drop(demo);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "browser test failed:\n{stdout}\n{stderr}\ndemo log: {}",
        log_path.display()
    );
    assert!(stdout.contains("ui: all steps passed"));
    for shot in ["matches.png", "match-replay.png", "console.png"] {
        assert!(screenshots.join(shot).exists(), "{shot} saved");
    }
}
