//! Tests over real connections: the websocket endpoint, a stalled push
//! client beside pull queries, TLS. The engine's runtime runs on its own
//! thread, as in `sluice serve`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use sluice_engine::processing_log::ProcessingLog;
use sluice_engine::runtime::Runtime;
use sluice_engine::topic::TopicBackend;
use sluice_sql::KsqlContext;
use tokio_tungstenite::tungstenite::Message;

use crate::{AppState, ServerConfig, router};

/// Generous bound on any single wait, so a bug fails the test instead of
/// hanging it.
const WAIT: Duration = Duration::from_secs(30);

/// A server on a loopback port with its engine running on a thread.
struct Server {
    state: AppState,
    addr: SocketAddr,
    engine: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    async fn start(config: ServerConfig, setup: &str) -> Server {
        let backend: Arc<dyn TopicBackend> = Arc::new(sluice_connectors::EmbeddedTopics::new());
        let runtime = Arc::new(Runtime::new(
            backend,
            Arc::new(ProcessingLog::default()),
            16,
        ));
        let state = AppState::new(Arc::new(KsqlContext::new(runtime)), "test", config);
        if let Err(e) = state.ctx.execute(setup) {
            panic!("{setup}: {e}");
        }
        state.ctx.runtime().run_until_idle();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let app = router(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let engine = Some(state.ctx.runtime().spawn().expect("engine"));
        Server {
            state,
            addr,
            engine,
        }
    }

    fn execute(&self, sql: &str) {
        if let Err(e) = self.state.ctx.execute(sql) {
            panic!("{sql}: {e}");
        }
    }

    /// Waits until `done` holds, polling.
    async fn until(&self, what: &str, done: impl Fn(&AppState) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(&self.state) {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.state.ctx.runtime().stop();
        if let Some(engine) = self.engine.take() {
            let _ = engine.join();
        }
    }
}

const USERS: &str = "CREATE TABLE users (id BIGINT PRIMARY KEY, name STRING, tags ARRAY<STRING>)
       WITH (kafka_topic='users', value_format='JSON', partitions=1);
     INSERT INTO users (id, name, tags) VALUES (1, 'ann', ARRAY['a']);
     INSERT INTO users (id, name, tags) VALUES (2, 'bob', ARRAY['b', 'c']);
     CREATE STREAM s (k STRING KEY, v INT) WITH (kafka_topic='s', value_format='JSON', partitions=1);";

/// Percent-encodes everything but letters and digits.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: SocketAddr, query: &str) -> Socket {
    let url = format!("ws://{addr}/ws/query?{query}");
    let (socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("connect");
    socket
}

fn request(sql: &str, properties: Value) -> String {
    format!(
        "request={}",
        encode(&json!({"ksql": sql, "streamsProperties": properties}).to_string())
    )
}

/// Text frames until the server closes: (frames, close code, reason).
async fn frames(socket: &mut Socket) -> (Vec<Value>, u16, String) {
    let mut out = Vec::new();
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a frame in time");
        match message {
            Some(Ok(Message::Text(t))) => out.push(serde_json::from_str(&t).expect("json frame")),
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((0, String::new()));
                return (out, code, reason);
            }
            Some(Ok(_)) => {}
            other => panic!("connection ended without a close frame: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_pull_query_sends_schema_rows_and_closes() {
    let server = Server::start(ServerConfig::default(), USERS).await;
    let mut socket = connect(
        server.addr,
        &format!(
            "{}&version=v1",
            request("SELECT * FROM users WHERE id = 2;", json!({}))
        ),
    )
    .await;
    let (frames, code, reason) = frames(&mut socket).await;
    assert_eq!((code, reason.as_str()), (1000, "done"));
    assert_eq!(
        frames[0],
        json!([
            {"name": "ID", "schema": {"type": "BIGINT", "fields": null, "memberSchema": null}, "type": "KEY"},
            {"name": "NAME", "schema": {"type": "STRING", "fields": null, "memberSchema": null}},
            {"name": "TAGS", "schema": {"type": "ARRAY", "fields": null,
                "memberSchema": {"type": "STRING", "fields": null, "memberSchema": null}}},
        ])
    );
    assert_eq!(
        &frames[1..],
        &[json!({"row": {"columns": [2, "bob", ["b", "c"]]}})]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_push_query_streams_rows_until_its_limit() {
    let server = Server::start(ServerConfig::default(), USERS).await;
    let mut socket = connect(
        server.addr,
        &request("SELECT k, v FROM s EMIT CHANGES LIMIT 2;", json!({})),
    )
    .await;
    let schema = tokio::time::timeout(WAIT, socket.next())
        .await
        .expect("schema in time");
    let Some(Ok(Message::Text(schema))) = schema else {
        panic!("no schema frame: {schema:?}");
    };
    let schema: Value = serde_json::from_str(&schema).expect("schema json");
    assert_eq!(schema[0]["name"], "K");
    assert_eq!(schema[1]["schema"]["type"], "INTEGER");
    server.execute(
        "INSERT INTO s (k, v) VALUES ('a', 1);
         INSERT INTO s (k, v) VALUES ('b', 2);
         INSERT INTO s (k, v) VALUES ('c', 3);",
    );
    let (rows, code, reason) = frames(&mut socket).await;
    assert_eq!(
        rows,
        vec![
            json!({"row": {"columns": ["a", 1]}}),
            json!({"row": {"columns": ["b", 2]}})
        ]
    );
    assert_eq!((code, reason.as_str()), (1000, "done"));
    server
        .until("the query stops", |s| s.push.running() == 0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_push_query_stops_when_the_client_closes() {
    let server = Server::start(ServerConfig::default(), USERS).await;
    let mut socket = connect(
        server.addr,
        &request("SELECT * FROM s EMIT CHANGES;", json!({})),
    )
    .await;
    let first = tokio::time::timeout(WAIT, socket.next())
        .await
        .expect("schema in time");
    assert!(matches!(first, Some(Ok(Message::Text(_)))), "{first:?}");
    server
        .until("the query runs", |s| s.push.running() == 1)
        .await;
    socket.close(None).await.expect("close");
    server
        .until("the query stops", |s| s.push.running() == 0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_bad_requests_close_with_ksqldb_codes() {
    let server = Server::start(ServerConfig::default(), USERS).await;
    for (query, code, needle) in [
        (String::new(), 1003, "missing request parameter"),
        ("request=%7Bnot".to_string(), 1003, "Error parsing request"),
        (request("", json!({})), 1003, "must be populated"),
        (
            format!("{}&version=v9", request("SELECT * FROM users;", json!({}))),
            1003,
            "invalid api version: v9",
        ),
        (
            request("SELEKT * FROM users;", json!({})),
            1003,
            "Error parsing query",
        ),
        (
            request("SELECT * FROM nope;", json!({})),
            1011,
            "NOPE does not exist",
        ),
        (
            request("SELECT nope FROM s EMIT CHANGES;", json!({})),
            1011,
            "NOPE",
        ),
    ] {
        let mut socket = connect(server.addr, &query).await;
        let (frames, got, reason) = frames(&mut socket).await;
        assert!(frames.is_empty(), "{query}: {frames:?}");
        assert_eq!(got, code, "{query}: {reason}");
        assert!(reason.contains(needle), "{query}: {reason}");
    }
    // Not a websocket upgrade: a ksqlDB error body.
    let response = plain_get(server.addr, "/ws/query?request=x").await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("\"error_code\":40000"), "{response}");
}

/// A GET over a fresh connection; the whole response as text.
async fn plain_get(addr: SocketAddr, path: &str) -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    write_all(&stream, request.as_bytes()).await;
    String::from_utf8_lossy(&read_to_close(&stream).await).into_owned()
}

async fn write_all(stream: &tokio::net::TcpStream, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        stream.writable().await.expect("writable");
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("write: {e}"),
        }
    }
}

async fn read_to_close(stream: &tokio::net::TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        tokio::time::timeout_at(deadline, stream.readable())
            .await
            .expect("response in time")
            .expect("readable");
        match stream.try_read(&mut chunk) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// A self-signed certificate for `localhost`, written to PEM files.
struct TestCertificate {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    der: rustls::pki_types::CertificateDer<'static>,
}

impl TestCertificate {
    fn new(name: &str) -> Self {
        let generated =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
        let dir = std::env::temp_dir().join(format!("sluice-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, generated.cert.pem()).expect("write cert");
        std::fs::write(&key, generated.signing_key.serialize_pem()).expect("write key");
        TestCertificate {
            cert,
            key,
            der: generated.cert.der().clone(),
        }
    }
}

impl Drop for TestCertificate {
    fn drop(&mut self) {
        if let Some(dir) = self.cert.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A TLS client that trusts `roots` only.
fn connector(roots: &[rustls::pki_types::CertificateDer<'static>]) -> tokio_rustls::TlsConnector {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).expect("trust root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(store)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// `GET path` over TLS with a client that trusts `roots`.
async fn tls_get(
    addr: SocketAddr,
    roots: &[rustls::pki_types::CertificateDer<'static>],
    path: &str,
) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = tokio::time::timeout(WAIT, connector(roots).connect(name, tcp))
        .await
        .expect("handshake in time")?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await?;
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, tls.read_to_end(&mut out))
        .await
        .expect("response in time")?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_clients_that_trust_the_certificate_only() {
    let certificate = TestCertificate::new("serve");
    let config = crate::tls::load(&certificate.cert, &certificate.key).expect("tls config");
    let backend: Arc<dyn TopicBackend> = Arc::new(sluice_connectors::EmbeddedTopics::new());
    let runtime = Arc::new(Runtime::new(
        backend,
        Arc::new(ProcessingLog::default()),
        16,
    ));
    let state = AppState::new(
        Arc::new(KsqlContext::new(runtime)),
        "test",
        ServerConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(crate::tls::serve_tls(listener, config, router(state)));

    // A client that connects and says nothing holds up no one.
    let _silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let answer = tls_get(addr, std::slice::from_ref(&certificate.der), "/info")
        .await
        .expect("https request");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("KsqlServerInfo"), "{answer}");
    // A client that does not trust the certificate cannot connect.
    let other = TestCertificate::new("other");
    let refused = tls_get(addr, std::slice::from_ref(&other.der), "/info").await;
    assert!(refused.is_err(), "{refused:?}");
    // Nor does plain HTTP get an answer.
    let plain = plain_get(addr, "/info").await;
    assert!(!plain.contains("KsqlServerInfo"), "{plain}");
}

#[test]
fn tls_configuration_errors_name_the_file() {
    let certificate = TestCertificate::new("errors");
    let missing = std::path::Path::new("/nonexistent/cert.pem");
    let e = crate::tls::load(missing, &certificate.key).expect_err("missing certificate");
    assert!(e.to_string().contains("/nonexistent/cert.pem"), "{e}");
    // A key that is not the certificate's.
    let other = TestCertificate::new("errors-other");
    let e = crate::tls::load(&certificate.cert, &other.key).expect_err("mismatched key");
    assert!(e.to_string().contains("do not fit"), "{e}");
    // A certificate file without a certificate.
    let e = crate::tls::load(&certificate.key, &certificate.key).expect_err("no certificate");
    assert!(e.to_string().contains("no certificate"), "{e}");
}

/// POSTs `body` over a fresh connection; the whole response as text.
async fn post(addr: SocketAddr, path: &str, body: &str) -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    write_all(&stream, request.as_bytes()).await;
    String::from_utf8_lossy(&read_to_close(&stream).await).into_owned()
}

/// Rows waiting in the buffer of the one push query running.
fn waiting(server: &Server) -> Option<usize> {
    server.state.push.backlog().first().map(|b| b.waiting)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_push_client_does_not_delay_pull_queries() {
    const BUFFER: usize = 8;
    let config = ServerConfig {
        push: crate::push::PushLimits {
            max_queries: 10,
            buffer_rows: BUFFER,
        },
        ..ServerConfig::default()
    };
    let setup = format!(
        "{USERS}
         CREATE STREAM big (k STRING KEY, payload STRING)
           WITH (kafka_topic='big', value_format='JSON', partitions=1);"
    );
    let server = Server::start(config, &setup).await;
    // A client that asks for a push query and then reads nothing, with a
    // small receive window so that it stalls soon.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("buffer size");
    let stalled = socket.connect(server.addr).await.expect("connect");
    let body = json!({"sql": "SELECT * FROM big EMIT CHANGES;"}).to_string();
    let request = format!(
        "POST /query-stream HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    write_all(&stalled, request.as_bytes()).await;
    server
        .until("the push query runs", |s| s.push.running() == 1)
        .await;

    // Rows of 64 KiB until the socket buffers and then the query's own
    // buffer are full.
    let payload = "x".repeat(64 * 1024);
    let backend = server.state.ctx.backend().clone();
    let mut full = false;
    for i in 0..2_000 {
        let record = sluice_engine::topic::Record {
            key: None,
            value: Some(bytes::Bytes::from(json!({"PAYLOAD": payload}).to_string())),
            timestamp: i,
            headers: vec![],
        };
        backend
            .produce(
                "big",
                vec![(sluice_engine::topic::Partitioning::Explicit(0), record)],
            )
            .expect("produce");
        let rows = i as u64 + 1;
        server
            .until("the row is handed to the client's buffer", move |s| {
                s.push
                    .backlog()
                    .first()
                    .is_some_and(|b| b.delivered == rows)
            })
            .await;
        if waiting(&server) == Some(BUFFER) {
            full = true;
            break;
        }
    }
    assert!(full, "the push query's buffer never filled");

    // Pull queries over other connections are answered meanwhile.
    let answer = post(
        server.addr,
        "/query-stream",
        &json!({"sql": "SELECT name FROM users WHERE id = 2;"}).to_string(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("[\"bob\"]"), "{answer}");
    let answer = post(
        server.addr,
        "/query",
        &json!({"ksql": "SELECT COUNT(*) FROM users;"}).to_string(),
    )
    .await;
    assert!(answer.contains("[2]"), "{answer}");
    // The stalled query still holds its full buffer: nothing was dropped
    // to make room for the pull queries.
    assert_eq!(waiting(&server), Some(BUFFER));

    // One row more and the stalled client is cut off; the engine goes on.
    let record = sluice_engine::topic::Record {
        key: None,
        value: Some(bytes::Bytes::from(json!({"PAYLOAD": "last"}).to_string())),
        timestamp: 0,
        headers: vec![],
    };
    backend
        .produce(
            "big",
            vec![(sluice_engine::topic::Partitioning::Explicit(0), record)],
        )
        .expect("produce");
    server
        .until("the stalled query is stopped", |s| s.push.running() == 0)
        .await;
    server.execute("INSERT INTO users (id, name, tags) VALUES (3, 'cy', ARRAY['d']);");
    server
        .until("the engine goes on", |s| {
            s.materializer.snapshots(&["USERS".into()])[0]
                .as_ref()
                .is_some_and(|u| u.num_rows() == 3)
        })
        .await;
    drop(stalled);
}
