//! SQL behaviour tested by data files: every `tests/sql/NAME.sql` runs on
//! embedded topics and its rendered result must equal `tests/sql/NAME.out`.
//!
//! A `.sql` file holds statements, each ending with `;` at the end of a
//! line, and input records as `--! input TOPIC KEY TIMESTAMP VALUE` lines
//! (KEY and VALUE are raw text; `null` for none). Inputs are produced after
//! all statements ran. The `.out` file lists each statement's outcome, then
//! every record of every topic a query writes, then the processing log.
//! Run with `SLUICE_BLESS=1` to rewrite the `.out` files after checking
//! the change is intended.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use sluice_connectors::EmbeddedTopics;
use sluice_engine::topic::{Partitioning, Record, TopicBackend};
use sluice_sql::{KsqlContext, StatementResult};

fn text(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "null".into(),
        Some(b) if b.iter().all(|c| !c.is_ascii_control()) => {
            String::from_utf8_lossy(b).into_owned()
        }
        Some(b) => format!(
            "0x{}",
            b.iter().map(|c| format!("{c:02x}")).collect::<String>()
        ),
    }
}

fn run_file(sql_path: &Path) -> String {
    let script = std::fs::read_to_string(sql_path).expect("readable .sql file");
    let topics = Arc::new(EmbeddedTopics::new());
    let ctx = KsqlContext::with_backend(topics.clone(), 1);
    let mut out = String::new();

    let mut statements = Vec::new();
    let mut current = String::new();
    let mut inputs = Vec::new();
    for line in script.lines() {
        if let Some(input) = line.strip_prefix("--! input ") {
            inputs.push(input.to_string());
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if line.trim_end().ends_with(';') {
            statements.push(std::mem::take(&mut current));
        }
    }
    let mut sinks = Vec::new();
    for statement in statements {
        let shown = statement
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join(" ");
        let shown = shown.split_whitespace().collect::<Vec<_>>().join(" ");
        match ctx.execute(&statement) {
            Ok(results) => {
                for r in results {
                    match r {
                        StatementResult::Status { message } => {
                            writeln!(out, "ok: {shown}\n  -> {message}").unwrap()
                        }
                        StatementResult::QueryStarted { query_id, sink, .. } => {
                            writeln!(out, "ok: {shown}\n  -> query {query_id} writes {sink}")
                                .unwrap();
                            if let Some(source) = ctx.source(&sink) {
                                writeln!(out, "  -> {} {}: {}", source.kind, sink, source.schema)
                                    .unwrap();
                                sinks.push(source.topic.clone());
                            }
                        }
                        StatementResult::Streams(list) | StatementResult::Tables(list) => {
                            let names: Vec<String> = list
                                .iter()
                                .map(|s| format!("{} ({})", s.name, s.topic))
                                .collect();
                            writeln!(out, "ok: {shown}\n  -> [{}]", names.join(", ")).unwrap()
                        }
                        other => writeln!(out, "ok: {shown}\n  -> {other:?}").unwrap(),
                    }
                }
            }
            Err(e) => writeln!(
                out,
                "error: {shown}\n  -> at {}:{}: {}",
                e.line, e.column, e.error
            )
            .unwrap(),
        }
    }
    for input in inputs {
        let mut parts = input.splitn(4, ' ');
        let (Some(topic), Some(key), Some(ts), Some(value)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            panic!("malformed input line: {input}");
        };
        let bytes = |s: &str| (s != "null").then(|| Bytes::from(s.to_string()));
        let record = Record {
            key: bytes(key),
            value: bytes(value),
            timestamp: ts.parse().expect("numeric timestamp"),
            headers: vec![],
        };
        topics
            .produce(topic, vec![(Partitioning::ByKey, record)])
            .expect("input topic exists");
        ctx.runtime().run_until_idle();
    }
    sinks.sort();
    sinks.dedup();
    for topic in sinks {
        writeln!(out, "topic {topic}:").unwrap();
        let window = ctx
            .sources()
            .into_iter()
            .find(|s| s.topic == topic)
            .and_then(|s| s.window);
        for r in topics.records(&topic).expect("sink topic exists") {
            let key = match (window, r.record.key.as_deref()) {
                (Some(w), Some(bytes)) => match w.decode_key(bytes) {
                    Ok((key, start, end)) => format!("{}@[{start},{end}]", text(Some(key))),
                    Err(e) => format!("bad windowed key: {e}"),
                },
                (_, key) => text(key),
            };
            writeln!(
                out,
                "  key={} value={} ts={}",
                key,
                text(r.record.value.as_deref()),
                r.record.timestamp
            )
            .unwrap();
        }
    }
    for e in ctx.runtime().processing_log().entries() {
        writeln!(
            out,
            "processing log: {} {:?} offset={:?}: {}",
            e.query_id, e.kind, e.offset, e.message
        )
        .unwrap();
    }
    out
}

#[test]
fn sql_files_match_their_golden_output() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql");
    let bless = std::env::var_os("SLUICE_BLESS").is_some();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/sql exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .sql files in {}", dir.display());
    let mut failures = Vec::new();
    for sql in files {
        let actual = run_file(&sql);
        let golden = sql.with_extension("out");
        if bless {
            std::fs::write(&golden, &actual).expect("writable golden file");
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "{}\n--- expected\n{expected}\n--- actual\n{actual}",
                sql.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} file(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
