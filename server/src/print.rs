//! `PRINT 'topic' [FROM BEGINNING] [INTERVAL n] [LIMIT n]` over
//! `POST /query`, as ksqlDB answers it: plain text, the formats detected
//! from the first record, then one line per record with its timestamp,
//! key, value and partition, streamed until the limit or the client
//! leaves.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sluice_engine::topic::{ConsumedRecord, TopicConsumer};

use crate::AppState;
use crate::error::ServerError;

/// While no record comes, an empty line this often lets a client that
/// stopped reading be noticed (its connection fails) and lets clients
/// check for a user's interrupt.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// A parsed `PRINT` statement.
#[derive(Debug, PartialEq, Eq)]
pub struct Print {
    pub topic: String,
    pub from_beginning: bool,
    /// Print every n-th record.
    pub interval: u64,
    pub limit: Option<u64>,
}

/// True when `sql` is a `PRINT` statement (parsed by [`parse`]).
pub fn is_print(sql: &str) -> bool {
    sql.trim_start()
        .get(..6)
        .is_some_and(|w| w.eq_ignore_ascii_case("PRINT "))
}

fn bad(sql: &str, message: &str) -> ServerError {
    ServerError::Statement {
        statement: sql.to_string(),
        message: message.to_string(),
    }
}

/// Parses `PRINT 'topic' | topic [FROM BEGINNING] [INTERVAL n] [LIMIT n]`.
pub fn parse(sql: &str) -> Result<Print, ServerError> {
    let text = sql.trim().trim_end_matches(';').trim();
    let rest = text.get(6..).unwrap_or_default().trim_start();
    let (topic, rest) = match rest.strip_prefix('\'') {
        Some(quoted) => match quoted.split_once('\'') {
            Some((topic, rest)) => (topic.to_string(), rest),
            None => return Err(bad(sql, "PRINT: the topic name has no closing quote")),
        },
        None => {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            // Unquoted names are case-insensitive in ksqlDB: uppercased.
            (rest[..end].to_uppercase(), &rest[end..])
        }
    };
    if topic.is_empty() {
        return Err(bad(sql, "PRINT takes a topic: PRINT 'topic';"));
    }
    let words: Vec<String> = rest.split_whitespace().map(str::to_uppercase).collect();
    let mut print = Print {
        topic,
        from_beginning: false,
        interval: 1,
        limit: None,
    };
    let mut i = 0;
    while i < words.len() {
        let number = |at: usize| -> Result<u64, ServerError> {
            words
                .get(at)
                .and_then(|w| w.parse::<u64>().ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| bad(sql, &format!("PRINT: {} takes a positive number", words[i])))
        };
        match words[i].as_str() {
            "FROM" if words.get(i + 1).is_some_and(|w| w == "BEGINNING") => {
                print.from_beginning = true;
                i += 2;
            }
            "INTERVAL" | "SAMPLE" => {
                print.interval = number(i + 1)?;
                i += 2;
            }
            "LIMIT" => {
                print.limit = Some(number(i + 1)?);
                i += 2;
            }
            other => {
                return Err(bad(
                    sql,
                    &format!(
                        "PRINT: unexpected '{other}'; expected FROM BEGINNING, INTERVAL or LIMIT"
                    ),
                ));
            }
        }
    }
    Ok(print)
}

/// The format ksqlDB would report for these bytes.
fn format_of(bytes: Option<&[u8]>) -> &'static str {
    match bytes {
        None => "¯\\_(ツ)_/¯ - no data processed",
        Some(b) => match std::str::from_utf8(b) {
            Ok(text) if serde_json::from_str::<serde_json::Value>(text).is_ok() => "JSON",
            Ok(_) => "KAFKA_STRING",
            Err(_) => "KAFKA_BYTES",
        },
    }
}

fn text_of(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "<null>".into(),
        Some(b) => match std::str::from_utf8(b) {
            Ok(text) => text.to_string(),
            Err(_) => b.iter().map(|x| format!("{x:02x}")).collect(),
        },
    }
}

fn line(r: &ConsumedRecord) -> String {
    let time = chrono::DateTime::from_timestamp_millis(r.record.timestamp)
        .map(|t| t.format("%Y/%m/%d %H:%M:%S%.3f Z").to_string())
        .unwrap_or_else(|| r.record.timestamp.to_string());
    format!(
        "rowtime: {time}, key: {}, value: {}, partition: {}\n",
        text_of(r.record.key.as_deref()),
        text_of(r.record.value.as_deref()),
        r.partition
    )
}

/// Reads the topic on its own thread (consumers block) and sends text
/// until the limit, the end of the client, or a read error.
fn pump(mut consumer: Box<dyn TopicConsumer>, print: Print, tx: tokio::sync::mpsc::Sender<String>) {
    let mut seen: u64 = 0;
    let mut printed: u64 = 0;
    let mut header_sent = false;
    let mut idle_since = Instant::now();
    if !print.from_beginning {
        // Only records produced from now on. Skipped here, off the async
        // workers: a broker's consumer blocks while it polls.
        loop {
            match consumer.poll(4096) {
                Ok(r) if r.is_empty() => break,
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.blocking_send(format!("Error reading the topic: {e}\n"));
                    return;
                }
            }
        }
    }
    loop {
        let records = match consumer.poll(256) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(format!("Error reading the topic: {e}\n"));
                return;
            }
        };
        if records.is_empty() {
            if tx.is_closed() {
                return;
            }
            if idle_since.elapsed() >= HEARTBEAT {
                idle_since = Instant::now();
                if tx.blocking_send("\n".into()).is_err() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        idle_since = Instant::now();
        for r in &records {
            seen += 1;
            if !(seen - 1).is_multiple_of(print.interval) {
                continue;
            }
            let mut text = String::new();
            if !header_sent {
                header_sent = true;
                text.push_str(&format!(
                    "Key format: {}\nValue format: {}\n",
                    format_of(r.record.key.as_deref()),
                    format_of(r.record.value.as_deref())
                ));
            }
            text.push_str(&line(r));
            if tx.blocking_send(text).is_err() {
                return;
            }
            printed += 1;
            if print.limit.is_some_and(|l| printed >= l) {
                return;
            }
        }
    }
}

/// Answers a `PRINT` statement.
pub fn respond(state: &AppState, sql: &str) -> Response {
    let print = match parse(sql) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let backend = state.ctx.runtime().backend().clone();
    if backend.describe_topic(&print.topic).is_none() {
        return bad(
            sql,
            &format!(
                "Could not find topic '{}'. Topic names are case-sensitive; quote them.",
                print.topic
            ),
        )
        .into_response();
    }
    let consumer = match backend.consumer(&print.topic) {
        Ok(c) => c,
        Err(e) => return ServerError::Internal(e.to_string()).into_response(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(64);
    let spawned = std::thread::Builder::new()
        .name("sluice-print".into())
        .spawn(move || pump(consumer, print, tx));
    if let Err(e) = spawned {
        return ServerError::Internal(e.to_string()).into_response();
    }
    let body = futures::stream::unfold(rx, |mut rx| async move {
        let text = rx.recv().await?;
        Some((Ok::<Bytes, std::convert::Infallible>(Bytes::from(text)), rx))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_print_statements() {
        assert_eq!(
            parse("print 'match.events' from beginning interval 2 limit 5;").ok(),
            Some(Print {
                topic: "match.events".into(),
                from_beginning: true,
                interval: 2,
                limit: Some(5),
            })
        );
        assert_eq!(
            parse("PRINT clicks;").map(|p| p.topic).ok(),
            Some("CLICKS".into())
        );
        assert!(parse("PRINT 'x' LIMIT 0;").is_err());
        assert!(parse("PRINT 'x' FROM NOW;").is_err());
        assert!(parse("PRINT 'x;").is_err());
        assert!(is_print("  print 'x';") && !is_print("PRINTX"));
    }
}
