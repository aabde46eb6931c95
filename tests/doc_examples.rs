//! Every SQL example in `docs/*.md` runs: each ```sql block is split into
//! statements, which go, in order and per file over one fresh engine, to
//! the REST API of an embedded server with the demo's projections
//! (`queries/*.sql`) loaded, as `sluice demo` has them: `SELECT`s to `POST /query` (pull
//! queries answer at once; push queries read from the earliest offset and
//! are followed briefly), everything else to `POST /ksql`. A statement
//! answered with an error fails the test, so a broken example fails the
//! build. Blocks marked ```sql no-run are skipped (kept for syntax that is
//! shown on purpose but cannot run here).
//!
//! `SLUICE_DOC_OUTPUT=1` prints every answer, for writing the outputs shown
//! next to examples.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::StreamExt;
use serde_json::{Value, json};
use sluice_connectors::EmbeddedTopics;
use sluice_server::{AppState, ServerConfig, router};
use sluice_sql::KsqlContext;
use tower::ServiceExt;

/// How long a push query is followed: long enough for rows already in its
/// topics to arrive.
const FOLLOW: Duration = Duration::from_millis(500);

/// A ```sql block: where it starts, its text.
struct Block {
    line: usize,
    text: String,
}

fn sql_blocks(markdown: &str) -> (Vec<Block>, usize) {
    let mut blocks = Vec::new();
    let mut skipped = 0;
    let mut current: Option<Block> = None;
    let mut skipping = false;
    for (i, line) in markdown.lines().enumerate() {
        let fence = line.trim_start();
        if let Some(block) = current.as_mut() {
            if fence.starts_with("```") {
                blocks.extend(current.take());
            } else {
                block.text.push_str(line);
                block.text.push('\n');
            }
        } else if skipping {
            skipping = !fence.starts_with("```");
        } else if let Some(info) = fence.strip_prefix("```") {
            let words: Vec<&str> = info.split_whitespace().collect();
            match words.as_slice() {
                ["sql"] => {
                    current = Some(Block {
                        line: i + 1,
                        text: String::new(),
                    })
                }
                ["sql", "no-run"] => {
                    skipped += 1;
                    skipping = true;
                }
                _ => skipping = true,
            }
        }
    }
    assert!(current.is_none(), "an unclosed ```sql block");
    (blocks, skipped)
}

/// Statements end with `;` at the end of a line; `--` lines are comments.
fn statements(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        if line.trim_start().starts_with("--") {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if line.trim_end().ends_with(';') {
            out.push(std::mem::take(&mut current).trim().to_string());
        }
    }
    assert!(
        current.trim().is_empty(),
        "a statement without its closing `;`: {current}"
    );
    out
}

fn post(path: &str, body: Value) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

/// Sends one statement; the answer's text, or why it failed.
async fn run(state: &AppState, sql: &str) -> Result<String, String> {
    let is_query = sql
        .split_whitespace()
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case("SELECT"));
    if !is_query {
        let response = router(state.clone())
            .oneshot(post("/ksql", json!({"ksql": sql})))
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        // Queries started by the statement process what is there.
        let ctx = state.ctx.clone();
        tokio::task::spawn_blocking(move || ctx.runtime().run_until_idle())
            .await
            .map_err(|e| e.to_string())?;
        return if status == StatusCode::OK {
            Ok(text)
        } else {
            Err(format!("{status}: {text}"))
        };
    }
    let body = json!({"ksql": sql, "streamsProperties": {"auto.offset.reset": "earliest"}});
    let response = router(state.clone())
        .oneshot(post("/query", body))
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let mut stream = response.into_body().into_data_stream();
    // Push queries get rows as the runtime processes them.
    let ctx = state.ctx.clone();
    tokio::task::spawn_blocking(move || ctx.runtime().run_until_idle())
        .await
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + FOLLOW;
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, stream.next()).await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    if status != StatusCode::OK || text.contains("\"errorMessage\"") || text.contains("\"@type\"") {
        return Err(format!("{status}: {text}"));
    }
    if !text.starts_with("[{\"header\"") {
        return Err(format!("no query header: {text}"));
    }
    Ok(text)
}

/// The files of a folder of the repository with this extension, sorted.
fn files(folder: &str, extension: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == extension))
        .collect();
    files.sort();
    files
}

fn docs() -> Vec<PathBuf> {
    files("docs", "md")
}

fn product_queries() -> Vec<PathBuf> {
    files("queries", "sql")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sql_example_in_docs_runs() {
    let show = std::env::var_os("SLUICE_DOC_OUTPUT").is_some();
    let mut failures = Vec::new();
    let mut ran = 0;
    for file in docs() {
        let markdown = std::fs::read_to_string(&file).expect("readable doc");
        let (blocks, skipped) = sql_blocks(&markdown);
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!(
            "{name}: {} runnable block(s), {skipped} marked no-run",
            blocks.len()
        );
        let ctx = Arc::new(KsqlContext::with_backend(
            Arc::new(EmbeddedTopics::new()),
            64,
        ));
        let state = AppState::new(ctx.clone(), "docs", ServerConfig::default());
        for query_file in product_queries() {
            let sql = std::fs::read_to_string(&query_file).expect("readable query file");
            if let Err(e) = ctx.execute(&sql) {
                panic!("{}: {e}", query_file.display());
            }
        }
        // The server's runtime would be running: let the projections
        // materialize before the first pull query.
        ctx.runtime().run_until_idle();
        for block in blocks {
            for sql in statements(&block.text) {
                ran += 1;
                match run(&state, &sql).await {
                    Ok(answer) if show => println!("--- {name}:{}\n{sql}\n=> {answer}", block.line),
                    Ok(_) => {}
                    Err(e) => failures.push(format!("{name}:{}: {sql}\n  -> {e}", block.line)),
                }
            }
        }
    }
    assert!(ran > 0, "no SQL examples found in docs/");
    assert!(
        failures.is_empty(),
        "{} failing example(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn blocks_and_statements_are_found() {
    let md = "text\n```sql\nSELECT 1;\n-- note\nSELECT\n  2;\n```\n```sql no-run\nBAD;\n```\n```text\nx;\n```\n";
    let (blocks, skipped) = sql_blocks(md);
    assert_eq!(skipped, 1);
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].line, 2);
    assert_eq!(
        statements(&blocks[0].text),
        vec!["SELECT 1;", "SELECT\n  2;"]
    );
}
