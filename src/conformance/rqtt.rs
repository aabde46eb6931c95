//! ksqlDB's REST query-validation tests (RQTT): statements sent to the
//! real HTTP routes of `sluice-server` (in process, no socket), with the
//! `/ksql` and `/query` answers compared against the expected responses.
//!
//! As in ksqlDB's runner: the statements before the first query run
//! first, then the inputs are produced and processed, then the rest of the
//! statements run in order; push queries read from the earliest offset.
//! Expected objects match as subsets (`name|startsWith` matches a prefix,
//! `{STATEMENT}` stands for the statement), rows in any order unless
//! `outputConditions.verifyOrder`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::body::Body;
use axum::http::Request;
use futures::{FutureExt, StreamExt};
use serde_json::{Value, json};
use sluice_connectors::EmbeddedTopics;
use sluice_server::{AppState, ServerConfig, router};
use sluice_sql::KsqlContext;
use tower::ServiceExt;

use super::case::{Outcome, prepare_topics, produce_input, settle};
use super::compare::mismatch;
use super::qtt::{self, Case};

/// What an RQTT test adds to a QTT case.
#[derive(Debug, Clone)]
pub struct RestCase {
    pub case: Case,
    pub responses: Vec<Value>,
    pub expected_error: Option<Value>,
    pub verify_order: bool,
}

/// The cases of one RQTT file, `format`/`config` expanded like QTT files.
pub fn load(path: &Path) -> Result<Vec<RestCase>> {
    let cases = qtt::load_cases(path)?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Value = serde_json::from_str(&qtt::strip_line_comments(&text))
        .with_context(|| format!("parsing {}", path.display()))?;
    let tests = doc
        .get("tests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut cases = cases.into_iter();
    let mut out = Vec::new();
    for test in tests {
        let count = |key: &str| {
            test.get(key)
                .and_then(Value::as_array)
                .map_or(1, |a| a.len().max(1))
        };
        for _ in 0..count("format") * count("config") {
            let Some(case) = cases.next() else {
                break;
            };
            out.push(RestCase {
                case,
                responses: test
                    .get("responses")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                expected_error: test.get("expectedError").cloned(),
                verify_order: test
                    .pointer("/outputConditions/verifyOrder")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            });
        }
    }
    Ok(out)
}

/// A statement that runs through `/query`.
fn is_query(statement: &str) -> bool {
    statement
        .trim_start()
        .get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("SELECT"))
}

/// One HTTP answer: status and the parsed body.
struct Answer {
    status: u16,
    body: Value,
}

pub fn run_case(rest: &RestCase, rt: &tokio::runtime::Runtime) -> Outcome {
    let case = &rest.case;
    if !case.enabled {
        return Outcome::Skipped {
            reason: "disabled in ksqlDB too (enabled: false)".into(),
        };
    }
    if let Some(format) = qtt::schema_registry_format(case) {
        return Outcome::Skipped {
            reason: format!("uses Schema Registry format {format}"),
        };
    }
    let topics = Arc::new(EmbeddedTopics::new());
    let ctx = Arc::new(KsqlContext::with_backend(topics.clone(), 1));
    for (name, value) in &case.properties {
        ctx.set_property(name, value);
    }
    prepare_topics(case, topics.as_ref());
    let state = AppState::new(ctx.clone(), "rqtt", ServerConfig::default());

    let mut answers: Vec<Answer> = Vec::new();
    let mut inputs_done = false;
    let produce = |ctx: &KsqlContext| -> Result<(), String> {
        for (i, input) in case.inputs.iter().enumerate() {
            produce_input(ctx, topics.as_ref(), input).map_err(|e| format!("input {i}: {e}"))?;
            if !settle(ctx) {
                return Err("queries did not settle".into());
            }
        }
        Ok(())
    };
    for statement in &case.statements {
        let query = is_query(statement);
        if query && !inputs_done {
            inputs_done = true;
            if let Err(reason) = produce(&ctx) {
                return Outcome::Failed { reason };
            }
        }
        let answer = rt.block_on(send(&state, statement, query));
        if !settle(&ctx) {
            return Outcome::Failed {
                reason: "queries did not settle".into(),
            };
        }
        let answer = match answer {
            Ok(a) => a,
            Err(reason) => return Outcome::Failed { reason },
        };
        if answer.status != 200 {
            return expected_failure(rest, statement, &answer);
        }
        answers.push(answer);
    }
    if !inputs_done && let Err(reason) = produce(&ctx) {
        return Outcome::Failed { reason };
    }
    if let Some(expected) = &rest.expected_error {
        return Outcome::Failed {
            reason: format!("expected an error, every statement succeeded: {expected}"),
        };
    }
    if answers.len() < rest.responses.len() {
        return Outcome::Failed {
            reason: format!(
                "{} responses expected, {} statements answered",
                rest.responses.len(),
                answers.len()
            ),
        };
    }
    for (i, (expected, answer)) in rest.responses.iter().zip(&answers).enumerate() {
        let statement = case.statements.get(i).map(String::as_str).unwrap_or("");
        if let Some(why) = compare_response(expected, answer, statement, rest.verify_order) {
            return Outcome::Failed {
                reason: format!("statement {i} ({statement}): {why}"),
            };
        }
    }
    Outcome::Passed {
        reason: String::new(),
    }
}

/// A statement failed: a pass only if the test expects this failure.
fn expected_failure(rest: &RestCase, statement: &str, answer: &Answer) -> Outcome {
    let got = answer
        .body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let Some(expected) = &rest.expected_error else {
        return Outcome::Failed {
            reason: format!("statement failed ({}): {statement}: {got}", answer.status),
        };
    };
    let status = expected.get("status").and_then(Value::as_u64);
    if status.is_some_and(|s| s != u64::from(answer.status)) {
        return Outcome::Failed {
            reason: format!(
                "expected HTTP {} ({expected}), got {}: {got}",
                status.unwrap_or_default(),
                answer.status
            ),
        };
    }
    let want = expected
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("");
    let reason = if got.contains(want) {
        "rejected as expected, same message".to_string()
    } else {
        format!("rejected as expected; ksqlDB says '{want}', Sluice says '{got}'")
    };
    Outcome::Passed { reason }
}

/// Sends one statement; a push query's body is read as far as it goes
/// once the engine is idle (its stream would otherwise never end).
async fn send(state: &AppState, statement: &str, query: bool) -> Result<Answer, String> {
    let (path, body) = if query {
        (
            "/query",
            json!({"ksql": statement, "streamsProperties": {"auto.offset.reset": "earliest"}}),
        )
    } else {
        ("/ksql", json!({"ksql": statement}))
    };
    let request = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .map_err(|e| e.to_string())?;
    let response = router(state.clone())
        .oneshot(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let mut stream = response.into_body().into_data_stream();
    let mut text = String::new();
    if query && status == 200 {
        // Rows of a push query exist once the runtime has run; the
        // caller settles after this returns, so run it here first.
        settle(&state.ctx);
    }
    loop {
        match stream.next().now_or_never() {
            Some(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Some(Some(Err(e))) => return Err(format!("reading the response: {e}")),
            // Ended, or a push query waiting for more rows.
            Some(None) | None => break,
        }
    }
    let body = if query && status == 200 {
        Value::Array(elements(&text)?)
    } else {
        serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?
    };
    Ok(Answer { status, body })
}

/// The objects of a `/query` answer, which a running push query leaves
/// unterminated.
fn elements(text: &str) -> Result<Vec<Value>, String> {
    let inner = text.trim_start().strip_prefix('[').unwrap_or(text);
    let mut out = Vec::new();
    let mut rest = inner;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.is_empty() || rest.starts_with(']') {
            return Ok(out);
        }
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        match values.next() {
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) => return Err(format!("bad /query element: {e}: {rest}")),
            None => return Ok(out),
        }
        rest = &rest[values.byte_offset()..];
    }
}

fn compare_response(
    expected: &Value,
    answer: &Answer,
    statement: &str,
    verify_order: bool,
) -> Option<String> {
    if let Some(admin) = expected.get("admin") {
        let entity = answer.body.get(0).unwrap_or(&Value::Null);
        return subset(admin, entity, statement).map(|why| format!("{why} in {entity}"));
    }
    let Some(query) = expected.get("query").and_then(Value::as_array) else {
        return Some(format!("unknown expected response {expected}"));
    };
    let Some(actual) = answer.body.as_array() else {
        return Some(format!("not a /query answer: {}", answer.body));
    };
    let split = |messages: &[Value]| {
        let mut header = None;
        let mut rows = Vec::new();
        let mut rest = Vec::new();
        for m in messages {
            if let Some(h) = m.get("header") {
                header = Some(h.clone());
            } else if let Some(r) = m.get("row") {
                rows.push(r.clone());
            } else {
                rest.push(m.clone());
            }
        }
        (header, rows, rest)
    };
    let (want_header, want_rows, want_rest) = split(query);
    let (got_header, got_rows, got_rest) = split(actual);
    if let Some(h) = &want_header {
        let got = got_header.unwrap_or(Value::Null);
        if let Some(why) = subset(h, &got, statement) {
            return Some(format!("header: {why}"));
        }
    }
    if want_rows.len() != got_rows.len() {
        return Some(format!(
            "expected {} rows, got {}: {}",
            want_rows.len(),
            got_rows.len(),
            Value::Array(got_rows)
        ));
    }
    let row_mismatch = |w: &Value, g: &Value| {
        let tombstone = |r: &Value| r.get("tombstone").and_then(Value::as_bool) == Some(true);
        if tombstone(w) != tombstone(g) {
            return Some(format!("tombstone: expected {w}, got {g}"));
        }
        mismatch(&w["columns"], &g["columns"])
    };
    if verify_order {
        for (w, g) in want_rows.iter().zip(&got_rows) {
            if let Some(why) = row_mismatch(w, g) {
                return Some(format!("row: {why}"));
            }
        }
    } else {
        let mut unmatched = got_rows.clone();
        for w in &want_rows {
            match unmatched.iter().position(|g| row_mismatch(w, g).is_none()) {
                Some(i) => {
                    unmatched.remove(i);
                }
                None => {
                    return Some(format!(
                        "no row matches {w}; got {}",
                        Value::Array(got_rows.clone())
                    ));
                }
            }
        }
    }
    if want_rest.len() != got_rest.len() {
        return Some(format!(
            "expected final messages {}, got {}",
            Value::Array(want_rest),
            Value::Array(got_rest)
        ));
    }
    for (w, g) in want_rest.iter().zip(&got_rest) {
        if let Some(why) = subset(w, g, statement) {
            return Some(why);
        }
    }
    None
}

/// Whether `actual` has everything `expected` has.
fn subset(expected: &Value, actual: &Value, statement: &str) -> Option<String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, ev) in e {
                if let Some(field) = key.strip_suffix("|startsWith") {
                    let prefix = ev.as_str().unwrap_or("").replace("{STATEMENT}", statement);
                    match a.get(field).and_then(Value::as_str) {
                        Some(s) if s.starts_with(&prefix) => continue,
                        other => {
                            return Some(format!(
                                "{field}: expected a prefix {prefix:?}, got {other:?}"
                            ));
                        }
                    }
                }
                match a.get(key) {
                    Some(av) => {
                        if let Some(why) = subset(ev, av, statement) {
                            return Some(format!("{key}: {why}"));
                        }
                    }
                    None => return Some(format!("missing {key}")),
                }
            }
            None
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Some(format!("expected {expected}, got {actual}"));
            }
            e.iter().zip(a).find_map(|(e, a)| subset(e, a, statement))
        }
        (Value::String(e), Value::String(a)) => {
            let e = e.replace("{STATEMENT}", statement);
            (e != *a).then(|| format!("expected {e:?}, got {a:?}"))
        }
        _ => mismatch(expected, actual),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unterminated_query_answers_split_into_elements() {
        let text = "[{\"header\":{\"schema\":\"`A` INTEGER\"}},\n{\"row\":{\"columns\":[1]}}";
        let parsed = elements(text).expect("elements");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1]["row"]["columns"][0], 1);
        assert_eq!(elements("[{\"a\":1}]\n").expect("closed").len(), 1);
        assert!(elements("[{\"a\":").is_err());
    }

    #[test]
    fn comments_after_content_are_stripped_but_urls_kept() {
        let text = "{\"a\": \"https://x\", // why\n// whole line\n\"b\": \"\\\"//\"}";
        let doc: Value = serde_json::from_str(&qtt::strip_line_comments(text)).expect("json");
        assert_eq!(doc["a"], "https://x");
        assert_eq!(doc["b"], "\"//");
    }

    #[test]
    fn expected_objects_match_as_subsets_with_prefixes() {
        let actual = json!({"@type": "currentStatus", "statementText": "CREATE X;", "x": 1});
        assert!(subset(&json!({"@type": "currentStatus"}), &actual, "").is_none());
        assert!(
            subset(
                &json!({"statementText|startsWith": "{STATEMENT}"}),
                &actual,
                "CREATE"
            )
            .is_none()
        );
        assert!(subset(&json!({"@type": "streams"}), &actual, "").is_some());
        assert!(subset(&json!({"missing": 1}), &actual, "").is_some());
    }
}
