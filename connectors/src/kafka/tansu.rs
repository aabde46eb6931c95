//! [`TansuBroker`]: a throw-away Kafka-compatible broker for tests.
//!
//! Tests that need a real broker start Tansu (installed by
//! `scripts/test.sh`) on a free loopback port with in-memory storage, and
//! the broker dies with the value.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Tansu broker, killed on drop.
pub struct TansuBroker {
    child: Child,
    port: u16,
}

/// Where the `tansu` binary is: `$TANSU`, then `PATH`, then cargo's bin
/// directory.
pub fn tansu_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TANSU") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("tansu"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
        let p = home.join("bin").join("tansu");
        p.is_file().then_some(p)
    })
}

impl TansuBroker {
    /// Starts a broker and waits until it accepts connections.
    pub fn start() -> Result<Self, String> {
        let binary = tansu_binary().ok_or_else(|| {
            "tansu is not installed; scripts/test.sh installs it (cargo install tansu --locked --features dynostore)".to_string()
        })?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("no free port: {e}"))?;
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let mut broker = TansuBroker { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = broker.child.try_wait() {
                return Err(format!("tansu exited at start: {status}"));
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(broker);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = broker.child.kill();
        Err("tansu did not accept connections within 30 s".into())
    }

    /// The broker's process id, for tests that pause it (SIGSTOP) to
    /// stage an outage without losing its in-memory data.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
