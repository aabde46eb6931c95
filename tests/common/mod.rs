//! What the tests that run the `sluice` binary as a server share: a child
//! process killed on drop, a free port, and a bare HTTP/1.1 GET. Tests of
//! several members of one cluster find more in [`cluster`], and the
//! `plays` stream some of them count in [`plays`].
//!
//! Each test file uses what it needs of this.
#![allow(dead_code)]

pub mod cluster;
pub mod plays;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Child;
use std::time::Duration;

/// A child process (a server) killed when the test ends, however it ends.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The raw answer to `GET path` on the loopback port, or `None` when
/// nothing answers.
pub fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    Some(answer)
}

/// True once `GET /healthcheck` answers 200.
pub fn healthy(port: u16) -> bool {
    get(port, "/healthcheck").is_some_and(|a| a.starts_with("HTTP/1.1 200"))
}

/// The body of the answer to `POST path` with a JSON `body`, or `None`
/// when nothing answers. HTTP/1.0, so the answer is not chunked.
pub fn post(port: u16, path: &str, body: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

/// A fresh scratch directory `sluice-{name}-{pid}` under the temp dir,
/// holding `queries/{file}` with `sql`, for `sluice serve --queries`.
pub fn work_dir_with_queries(name: &str, file: &str, sql: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("queries")).expect("work dir");
    std::fs::write(dir.join("queries").join(file), sql).expect("queries");
    dir
}

/// Starts `sluice serve` on `port` against the Kafka broker at
/// `bootstrap`, with the queries of `work/queries`, `extra` flags, and its
/// log (at `info`) in `log`. `SLUICE_BIN` picks another binary (a release
/// build, for measurements).
pub fn serve_on_kafka(
    bootstrap: &str,
    work: &std::path::Path,
    port: u16,
    extra: &[&std::ffi::OsStr],
    log: &std::path::Path,
) -> KillOnDrop {
    use std::process::{Command, Stdio};
    let log = std::fs::File::create(log).expect("log file");
    let binary =
        std::env::var("SLUICE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sluice").into());
    let child = Command::new(binary)
        .args(["serve", "--port", &port.to_string(), "--kafka", bootstrap])
        .args(extra)
        .arg("--queries")
        .arg(work.join("queries"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting sluice");
    KillOnDrop(child)
}
