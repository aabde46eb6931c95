//! Running one QTT case on a fresh engine with embedded topics.

use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::ArrayRef;
use serde_json::Value;
use sluice_connectors::EmbeddedTopics;
use sluice_engine::format::{Format, json, kafka, protobuf};
use sluice_engine::schema::Column;
use sluice_engine::topic::{Partitioning, Record, TopicBackend};
use sluice_sql::KsqlContext;
use sluice_sql::catalog::DataSource;
use sluice_sql::parser::{Statement, parse_statements};

use super::compare::mismatch;
use super::qtt::Case;

/// How a case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed { reason: String },
    Failed { reason: String },
    Skipped { reason: String },
}

/// A query chain that keeps producing after this many polls is stuck.
const MAX_STEPS: usize = 1_000_000;

pub fn run_case(case: &Case) -> Outcome {
    if !case.enabled {
        return Outcome::Skipped {
            reason: "disabled in ksqlDB too (enabled: false)".into(),
        };
    }
    if let Some(format) = super::qtt::schema_registry_format(case) {
        return Outcome::Skipped {
            reason: format!("uses Schema Registry format {format}"),
        };
    }
    let topics = Arc::new(EmbeddedTopics::new());
    let ctx = KsqlContext::with_backend(topics.clone(), 1);
    for (name, value) in &case.properties {
        ctx.set_property(name, value);
    }
    prepare_topics(case, topics.as_ref());

    for statement in &case.statements {
        if let Err(e) = ctx.execute(statement) {
            return match &case.expected_exception {
                Some(expected) => {
                    let want = expected
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let got = e.to_string();
                    let reason = if got.contains(want) {
                        "rejected as expected, same message".to_string()
                    } else {
                        format!("rejected as expected; ksqlDB says '{want}', Sluice says '{got}'")
                    };
                    Outcome::Passed { reason }
                }
                None => Outcome::Failed {
                    reason: format!("statement failed: {statement}: {e}"),
                },
            };
        }
    }

    for (i, input) in case.inputs.iter().enumerate() {
        if let Err(reason) = produce_input(&ctx, topics.as_ref(), input) {
            return Outcome::Failed {
                reason: format!("input {i}: {reason}"),
            };
        }
        if !settle(&ctx) {
            return Outcome::Failed {
                reason: "queries did not settle (a feedback loop?)".into(),
            };
        }
    }

    if let Some(expected) = &case.expected_exception {
        let errors = ctx.runtime().processing_log().entries();
        let want = expected
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("");
        if errors.iter().any(|e| e.message.contains(want)) || failed_query(&ctx).is_some() {
            return Outcome::Passed {
                reason: "failed at run time as expected".into(),
            };
        }
        return Outcome::Failed {
            reason: format!("expected an error: {expected}"),
        };
    }
    if let Some(why) = failed_query(&ctx) {
        return Outcome::Failed { reason: why };
    }
    if let Err(reason) = check_outputs(&ctx, topics.as_ref(), &case.outputs) {
        return Outcome::Failed { reason };
    }
    if let Some(post) = &case.post
        && let Err(reason) = check_post(&ctx, post)
    {
        return Outcome::Failed { reason };
    }
    Outcome::Passed {
        reason: String::new(),
    }
}

pub(super) fn settle(ctx: &KsqlContext) -> bool {
    for _ in 0..MAX_STEPS {
        if ctx.runtime().step() == 0 {
            return true;
        }
    }
    false
}

fn failed_query(ctx: &KsqlContext) -> Option<String> {
    ctx.runtime()
        .states()
        .into_iter()
        .find_map(|(id, state)| match state {
            sluice_engine::query::QueryState::Error(e) => Some(format!("query {id} failed: {e}")),
            _ => None,
        })
}

/// ksqlDB's runner creates the topics a test reads before running it:
/// declared ones, input ones, and those named by CREATE statements.
pub(super) fn prepare_topics(case: &Case, topics: &EmbeddedTopics) {
    let mut wanted: Vec<(String, u32)> = Vec::new();
    for t in &case.topics {
        if let Some(name) = t.get("name").and_then(Value::as_str) {
            let partitions = t.get("partitions").and_then(Value::as_u64).unwrap_or(1) as u32;
            wanted.push((name.to_string(), partitions));
        }
    }
    for s in &case.statements {
        if let Ok(parsed) = parse_statements(s) {
            for p in parsed {
                if let Statement::CreateSource(c) = p.statement
                    && !c.properties.contains_key("PARTITIONS")
                    && let Some(topic) = c.properties.get("KAFKA_TOPIC")
                {
                    wanted.push((topic.as_text(), 1));
                }
            }
        }
    }
    for input in &case.inputs {
        if let Some(topic) = input.get("topic").and_then(Value::as_str) {
            wanted.push((topic.to_string(), 1));
        }
    }
    for (name, partitions) in wanted {
        if topics.describe_topic(&name).is_none() {
            // Creating a topic that does not exist cannot fail here.
            let _ = topics.create_topic(&name, partitions, 1);
        }
    }
}

fn source_for_topic(ctx: &KsqlContext, topic: &str) -> Option<Arc<DataSource>> {
    ctx.sources().into_iter().find(|s| s.topic == topic)
}

/// Serializes a test record's key or value JSON as the topic's source
/// would have it on the wire.
fn encode(
    value: &Value,
    format: &Format,
    columns: &[Column],
    is_key: bool,
) -> Result<Option<Vec<u8>>, String> {
    if value.is_null() {
        return Ok(None);
    }
    Ok(Some(match format {
        Format::Json => serde_json::to_vec(value).map_err(|e| e.to_string())?,
        Format::Delimited { .. } => match value {
            Value::String(s) => s.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        },
        Format::Kafka => {
            let Some(column) = columns.first() else {
                return Ok(if is_key { None } else { Some(vec![]) });
            };
            let scalar = json::coerce(value, &column.sql_type).map_err(|e| e.to_string())?;
            let array: ArrayRef = scalar.to_array().map_err(|e| e.to_string())?;
            kafka::encode(&[array.as_ref()], 0).map_err(|e| e.to_string())?
        }
        Format::None => return Ok(None),
        Format::Protobuf { nullable } => {
            // The JSON record read as the columns, then written as the
            // source's protobuf message.
            let text = serde_json::to_vec(value).map_err(|e| e.to_string())?;
            let unwrap = is_key && columns.len() == 1;
            let values = json::decode(columns, &text, unwrap).map_err(|e| e.to_string())?;
            protobuf::encode(columns, &values, *nullable).map_err(|e| e.to_string())?
        }
    }))
}

fn raw_bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone().into_bytes()),
        other => Some(other.to_string().into_bytes()),
    }
}

pub(super) fn produce_input(
    ctx: &KsqlContext,
    topics: &EmbeddedTopics,
    input: &Value,
) -> Result<(), String> {
    let topic = input
        .get("topic")
        .and_then(Value::as_str)
        .ok_or("input without topic")?;
    let key = input.get("key").cloned().unwrap_or(Value::Null);
    let value = input.get("value").cloned().unwrap_or(Value::Null);
    let (key, value) = match source_for_topic(ctx, topic) {
        Some(source) => {
            let codec = source.codec();
            let mut key = encode(&key, &source.key_format, codec.key_columns(), true)?;
            if let Some(window) = source.window {
                let bound = |name: &str| {
                    input
                        .get("window")
                        .and_then(|w| w.get(name))
                        .and_then(Value::as_i64)
                };
                let start = bound("start").unwrap_or(0);
                let end = bound("end").unwrap_or(start);
                key = Some(window.encode_key(key.unwrap_or_default(), start, end));
            }
            (
                key,
                encode(&value, &source.value_format, codec.value_columns(), false)?,
            )
        }
        None => (raw_bytes(&key), raw_bytes(&value)),
    };
    let timestamp = input.get("timestamp").and_then(Value::as_i64).unwrap_or(0);
    let record = Record {
        key: key.map(Bytes::from),
        value: value.map(Bytes::from),
        timestamp,
        headers: vec![],
    };
    topics
        .produce(topic, vec![(Partitioning::ByKey, record)])
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Reads bytes back as the JSON a test file writes.
fn decode(bytes: Option<&[u8]>, format: &Format, columns: &[Column]) -> Value {
    let Some(bytes) = bytes else {
        return Value::Null;
    };
    let text = || String::from_utf8_lossy(bytes).into_owned();
    match format {
        Format::Json => serde_json::from_slice(bytes).unwrap_or_else(|_| Value::String(text())),
        Format::Delimited { .. } => Value::String(text()),
        Format::Kafka => match columns.first() {
            Some(_) => {
                let decoded = kafka::decode(columns, bytes);
                match decoded
                    .ok()
                    .and_then(|v| v.into_iter().next())
                    .and_then(|s| s.to_array().ok())
                {
                    Some(array) => {
                        let mut out = String::new();
                        match json::write_value(&mut out, array.as_ref(), 0) {
                            Ok(()) => serde_json::from_str(&out).unwrap_or(Value::String(out)),
                            Err(_) => Value::String(text()),
                        }
                    }
                    None => Value::String(text()),
                }
            }
            None => Value::Null,
        },
        Format::None => Value::Null,
        Format::Protobuf { nullable } => match protobuf::decode(columns, bytes, *nullable) {
            Ok(values) => {
                let mut object = serde_json::Map::new();
                for (column, value) in columns.iter().zip(values) {
                    let mut out = String::new();
                    let written = value.to_array().map_err(|e| e.to_string()).and_then(|a| {
                        json::write_value(&mut out, a.as_ref(), 0).map_err(|e| e.to_string())
                    });
                    let json_value = match written {
                        Ok(()) => serde_json::from_str(&out).unwrap_or(Value::String(out)),
                        Err(e) => Value::String(e),
                    };
                    object.insert(column.name.clone(), json_value);
                }
                if columns.len() == 1 && object.len() == 1 && is_single_key(columns) {
                    object
                        .into_iter()
                        .next()
                        .map(|(_, v)| v)
                        .unwrap_or(Value::Null)
                } else {
                    Value::Object(object)
                }
            }
            Err(_) => Value::String(text()),
        },
    }
}

/// Whether `columns` is a single key column, which tests write bare.
fn is_single_key(columns: &[Column]) -> bool {
    matches!(columns, [c] if c.kind == sluice_engine::schema::ColumnKind::Key)
}

fn check_outputs(
    ctx: &KsqlContext,
    topics: &EmbeddedTopics,
    outputs: &[Value],
) -> Result<(), String> {
    let mut by_topic: Vec<(String, Vec<&Value>)> = Vec::new();
    for o in outputs {
        let topic = o
            .get("topic")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        match by_topic.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, list)) => list.push(o),
            None => by_topic.push((topic, vec![o])),
        }
    }
    for (topic, expected) in by_topic {
        let actual = topics
            .records(&topic)
            .map_err(|e| format!("output topic {topic}: {e}"))?;
        let source = source_for_topic(ctx, &topic);
        let render =
            |r: &sluice_engine::topic::Record| -> (Value, Value, Option<(i64, i64, bool)>) {
                match &source {
                    Some(s) => {
                        let codec = s.codec();
                        let (key_bytes, window) = match (s.window, r.key.as_deref()) {
                            (Some(w), Some(bytes)) => match w.decode_key(bytes) {
                                Ok((key, start, end)) => {
                                    (Some(key), Some((start, end, w.is_session())))
                                }
                                Err(_) => (Some(bytes), None),
                            },
                            (_, key) => (key, None),
                        };
                        (
                            decode(key_bytes, &s.key_format, codec.key_columns()),
                            decode(r.value.as_deref(), &s.value_format, codec.value_columns()),
                            window,
                        )
                    }
                    None => (
                        r.key
                            .as_deref()
                            .map(|b| Value::String(String::from_utf8_lossy(b).into_owned()))
                            .unwrap_or(Value::Null),
                        r.value
                            .as_deref()
                            .map(|b| Value::String(String::from_utf8_lossy(b).into_owned()))
                            .unwrap_or(Value::Null),
                        None,
                    ),
                }
            };
        for (i, want) in expected.iter().enumerate() {
            let Some(got) = actual.get(i) else {
                return Err(format!(
                    "topic {topic}: expected {} records, got {}; missing #{i}: {want}",
                    expected.len(),
                    actual.len()
                ));
            };
            let (key, value, window) = render(&got.record);
            if let Some(want_window) = want.get("window") {
                let bound = |name: &str| want_window.get(name).and_then(Value::as_i64);
                let session = want_window.get("type").and_then(Value::as_str) == Some("session");
                let expected_window = (
                    bound("start").unwrap_or(0),
                    bound("end").unwrap_or(0),
                    session,
                );
                if window != Some(expected_window) {
                    return Err(format!(
                        "topic {topic} record #{i}: window {window:?} instead of {expected_window:?}"
                    ));
                }
            }
            let want_key = want.get("key").cloned().unwrap_or(Value::Null);
            if let Some(why) = mismatch(&want_key, &key) {
                return Err(format!("topic {topic} record #{i} key: {why}"));
            }
            let want_value = want.get("value").cloned().unwrap_or(Value::Null);
            if let Some(why) = mismatch(&want_value, &value) {
                return Err(format!("topic {topic} record #{i} value: {why}"));
            }
            if let Some(ts) = want.get("timestamp").and_then(Value::as_i64)
                && ts != got.record.timestamp
            {
                return Err(format!(
                    "topic {topic} record #{i}: timestamp {} instead of {ts}",
                    got.record.timestamp
                ));
            }
        }
        if actual.len() > expected.len() {
            let (key, value, _) = render(&actual[expected.len()].record);
            return Err(format!(
                "topic {topic}: expected {} records, got {}; first extra: key {key} value {value}",
                expected.len(),
                actual.len()
            ));
        }
    }
    Ok(())
}

/// Checks the sources' type and schema after the run, where the test
/// states them.
fn check_post(ctx: &KsqlContext, post: &Value) -> Result<(), String> {
    for expected in post
        .get("sources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = expected.get("name").and_then(Value::as_str) else {
            continue;
        };
        let Some(source) = ctx.source(name) else {
            return Err(format!("post: source {name} does not exist"));
        };
        if let Some(kind) = expected.get("type").and_then(Value::as_str)
            && !kind.eq_ignore_ascii_case(source.kind.lower())
        {
            return Err(format!(
                "post: {name} is a {}, expected a {kind}",
                source.kind.lower()
            ));
        }
        if let Some(schema) = expected.get("schema").and_then(Value::as_str) {
            // Parse the expected schema with our own column grammar and
            // compare column by column.
            let probe =
                format!("CREATE STREAM PROBE ({schema}) WITH (kafka_topic='p', format='JSON');");
            let parsed = parse_statements(&probe);
            if let Ok(mut parsed) = parsed
                && let Some(p) = parsed.pop()
                && let Statement::CreateSource(c) = p.statement
            {
                let want: Vec<(String, String, bool)> = c
                    .columns
                    .iter()
                    .map(|c| {
                        (
                            c.name.clone(),
                            c.sql_type.to_string(),
                            c.constraint != sluice_sql::parser::ColumnConstraint::None,
                        )
                    })
                    .collect();
                let got: Vec<(String, String, bool)> = source
                    .schema
                    .columns()
                    .iter()
                    .map(|c| {
                        (
                            c.name.clone(),
                            c.sql_type.to_string(),
                            c.kind == sluice_engine::schema::ColumnKind::Key,
                        )
                    })
                    .collect();
                if want != got {
                    return Err(format!(
                        "post: {name} has schema {}, expected {schema}",
                        source.schema
                    ));
                }
            }
        }
    }
    Ok(())
}
