//! The function reference cannot drift: `docs/functions.md` must be what
//! `sluice docs functions` prints today (run with `SLUICE_BLESS=1` to
//! rewrite it), and it must have a section for exactly the functions
//! `SHOW FUNCTIONS` lists.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use sluice_connectors::EmbeddedTopics;
use sluice_sql::{KsqlContext, StatementResult};

fn generated() -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["docs", "functions"])
        .output()
        .expect("run sluice docs functions");
    assert!(
        output.status.success(),
        "sluice docs functions failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 Markdown")
}

#[test]
fn checked_in_reference_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/functions.md");
    let fresh = generated();
    if std::env::var_os("SLUICE_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write docs/functions.md");
    }
    let checked_in = std::fs::read_to_string(&path).expect("docs/functions.md");
    assert!(
        checked_in == fresh,
        "docs/functions.md is stale: run `sluice docs functions --out docs/functions.md` \
         (or this test with SLUICE_BLESS=1) and review the diff"
    );
}

#[test]
fn reference_lists_exactly_what_show_functions_lists() {
    let ctx = KsqlContext::with_backend(Arc::new(EmbeddedTopics::new()), 1);
    let results = ctx.execute("SHOW FUNCTIONS;").expect("SHOW FUNCTIONS");
    let Some(StatementResult::Functions(listed)) = results.into_iter().next() else {
        panic!("SHOW FUNCTIONS answered no function list");
    };
    let mut listed: Vec<String> = listed.into_iter().map(|(name, _)| name).collect();
    listed.sort();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/functions.md");
    let text = std::fs::read_to_string(path).expect("docs/functions.md");
    let mut documented: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(str::to_string)
        .collect();
    documented.sort();
    assert_eq!(listed, documented);
}
