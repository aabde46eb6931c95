//! The shell's HTTP client: only ksqlDB's public REST API (`/info`,
//! `/ksql`, `/query-stream`, `/close-query`), so the shell works against
//! a ksqlDB server as well as Sluice.

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde_json::{Map, Value, json};

const KSQL_MEDIA_TYPE: &str = "application/vnd.ksql.v1+json";
const DELIMITED_MEDIA_TYPE: &str = "application/vnd.ksqlapi.delimited.v1";
/// Largest `/ksql` answer read; a statement's entities are small.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// A server the shell talks to.
pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// The `Authorization` header, when credentials were given.
    authorization: Option<String>,
}

/// The `Authorization` header of HTTP basic auth.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// A query answer being read: its header, then rows as they come.
pub struct QueryStream {
    pub query_id: String,
    pub columns: Vec<String>,
    lines: Box<dyn BufRead + Send>,
}

/// One message of a query stream.
pub enum QueryMessage {
    Row(Vec<Value>),
    /// The server ended the query with an error.
    Error(String),
}

impl Client {
    pub fn new(server: &str, authorization: Option<String>) -> Self {
        let config = ureq::Agent::config_builder()
            // ksqlDB's errors come with a JSON body worth showing.
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build();
        Client {
            base: server.trim_end_matches('/').to_string(),
            agent: config.into(),
            authorization,
        }
    }

    pub fn server(&self) -> &str {
        &self.base
    }

    fn post(
        &self,
        path: &str,
        accept: &str,
        body: &Value,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Accept", accept)
            .header("Content-Type", "application/json");
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        request
            .send(body.to_string())
            .with_context(|| format!("cannot reach the server at {}", self.base))
    }

    /// `GET /info`: the server's version line.
    pub fn info(&self) -> Result<Value> {
        let mut request = self
            .agent
            .get(format!("{}/info", self.base))
            .header("Accept", KSQL_MEDIA_TYPE);
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        let mut response = request
            .call()
            .with_context(|| format!("cannot reach the server at {}", self.base))?;
        read_json(&mut response)
    }

    /// `POST /ksql`: runs one statement, answers its entities.
    pub fn ksql(&self, statement: &str, properties: &Map<String, Value>) -> Result<Vec<Value>> {
        let body = json!({"ksql": statement, "streamsProperties": properties});
        let mut response = self.post("/ksql", KSQL_MEDIA_TYPE, &body)?;
        let ok = response.status().is_success();
        let value = read_json(&mut response)?;
        if !ok {
            return Err(anyhow!(error_message(&value)));
        }
        match value {
            Value::Array(entities) => Ok(entities),
            other => Err(anyhow!("unexpected answer from /ksql: {other}")),
        }
    }

    /// `POST /query-stream`: starts a query, answers once its header came.
    pub fn query(&self, sql: &str, properties: &Map<String, Value>) -> Result<QueryStream> {
        let body = json!({"sql": sql, "properties": properties});
        let mut response = self.post("/query-stream", DELIMITED_MEDIA_TYPE, &body)?;
        if !response.status().is_success() {
            let value = read_json(&mut response)?;
            return Err(anyhow!(error_message(&value)));
        }
        let reader: Box<dyn Read + Send> = Box::new(response.into_body().into_reader());
        let mut lines: Box<dyn BufRead + Send> = Box::new(BufReader::new(reader));
        let mut first = String::new();
        lines
            .read_line(&mut first)
            .context("reading the query's header")?;
        let header: Value = serde_json::from_str(first.trim())
            .with_context(|| format!("the query's header is not JSON: {first}"))?;
        if header.get("queryId").is_none() && header.get("message").is_some() {
            return Err(anyhow!(error_message(&header)));
        }
        let strings = |key: &str| -> Vec<String> {
            header[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(QueryStream {
            query_id: header["queryId"].as_str().unwrap_or_default().to_string(),
            columns: strings("columnNames"),
            lines,
        })
    }

    /// `POST /query` with a `PRINT` statement: the records as text lines,
    /// as they come.
    pub fn print(
        &self,
        statement: &str,
        properties: &Map<String, Value>,
    ) -> Result<Box<dyn BufRead + Send>> {
        let body = json!({"ksql": statement, "streamsProperties": properties});
        let mut response = self.post("/query", KSQL_MEDIA_TYPE, &body)?;
        if !response.status().is_success() {
            let value = read_json(&mut response)?;
            return Err(anyhow!(error_message(&value)));
        }
        let reader: Box<dyn Read + Send> = Box::new(response.into_body().into_reader());
        Ok(Box::new(BufReader::new(reader)))
    }

    /// `POST /close-query`: stops a push query.
    pub fn close_query(&self, query_id: &str) -> Result<()> {
        let mut response = self.post(
            "/close-query",
            KSQL_MEDIA_TYPE,
            &json!({"queryId": query_id}),
        )?;
        if response.status().is_success() {
            return Ok(());
        }
        let value = read_json(&mut response)?;
        Err(anyhow!(error_message(&value)))
    }
}

impl QueryStream {
    /// The next message; `None` when the query ended.
    pub fn next_message(&mut self) -> Option<Result<QueryMessage>> {
        loop {
            let mut line = String::new();
            match self.lines.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) if line.trim().is_empty() => continue,
                Ok(_) => {
                    return Some(match serde_json::from_str::<Value>(line.trim()) {
                        Ok(Value::Array(row)) => Ok(QueryMessage::Row(row)),
                        Ok(other) => Ok(QueryMessage::Error(error_message(&other))),
                        Err(e) => Err(anyhow!("a row is not JSON ({e}): {}", line.trim())),
                    });
                }
                Err(e) => return Some(Err(anyhow!("reading the query's rows: {e}"))),
            }
        }
    }
}

fn read_json(response: &mut ureq::http::Response<ureq::Body>) -> Result<Value> {
    let status = response.status();
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_string()
        .context("reading the server's answer")?;
    serde_json::from_str(&text).map_err(|_| {
        anyhow!(
            "the server answered HTTP {status} with a body that is not JSON: {}",
            text.trim()
        )
    })
}

/// The message of a ksqlDB error body, or the body itself.
pub fn error_message(value: &Value) -> String {
    match value.get("message").and_then(Value::as_str) {
        Some(message) => message.to_string(),
        None => value.to_string(),
    }
}
