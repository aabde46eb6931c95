//! `sluice shell` driven as a user drives it, against a server on a free
//! port: non-interactively (`-e`, `-f`, exit codes) and interactively in
//! a pseudo-terminal (a statement and its table, a push query stopped with
//! Ctrl-C, completion, history across sessions).

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_connectors::EmbeddedTopics;
use sluice_server::{AppState, ServerConfig, router};
use sluice_sql::KsqlContext;

const WAIT: Duration = Duration::from_secs(30);

struct Server {
    url: String,
    ctx: Arc<KsqlContext>,
    state: AppState,
    _http: tokio::runtime::Runtime,
}

fn start_server() -> Server {
    let ctx = Arc::new(KsqlContext::with_backend(
        Arc::new(EmbeddedTopics::new()),
        64,
    ));
    let state = AppState::new(ctx.clone(), "shell-test", ServerConfig::default());
    ctx.execute(
        "CREATE STREAM CLICKS (ID STRING KEY, PAGE STRING, N INT) \
           WITH (KAFKA_TOPIC='clicks', VALUE_FORMAT='JSON', PARTITIONS=1);
         CREATE TABLE PAGES AS SELECT PAGE, COUNT(*) AS HITS FROM CLICKS GROUP BY PAGE;",
    )
    .expect("test sources");
    ctx.runtime().spawn().expect("runtime");
    let http = tokio::runtime::Runtime::new().expect("tokio");
    let listener = http
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let app = router(state.clone());
    http.spawn(async move { axum::serve(listener, app).await });
    Server {
        url: format!("http://127.0.0.1:{port}"),
        ctx,
        state,
        _http: http,
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-shell-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn shell(server: &Server, args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["shell", "--server", &server.url])
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_STATE_HOME")
        .stdin(Stdio::null())
        .output()
        .expect("run sluice shell")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The table line holding every one of `cells` as a cell of its own.
fn row_with<'a>(out: &'a str, cells: &[&str]) -> Option<&'a str> {
    out.lines().find(|line| {
        let parts: Vec<&str> = line.split('|').map(str::trim).collect();
        cells.iter().all(|c| parts.contains(c))
    })
}

#[test]
fn statements_from_arguments_and_files_render_tables_and_exit_codes() {
    let server = start_server();
    let home = scratch("batch");

    let out = shell(&server, &["-e", "SHOW TABLES;"], &home);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        row_with(&stdout, &["PAGES", "JSON"]).is_some() && stdout.contains("Table Name"),
        "{stdout}"
    );

    let out = shell(
        &server,
        &[
            "-e",
            "INSERT INTO CLICKS (ID, PAGE, N) VALUES ('u1', 'home', 1);
             INSERT INTO CLICKS (ID, PAGE, N) VALUES ('u2', 'home', 2);
             INSERT INTO CLICKS (ID, PAGE, N) VALUES ('u3', 'docs', 3);",
        ],
        &home,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The table follows the inserts as the runtime catches up.
    let start = Instant::now();
    loop {
        let out = shell(
            &server,
            &["-e", "SELECT PAGE, HITS FROM PAGES WHERE PAGE = 'home';"],
            &home,
        );
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
        if row_with(&stdout, &["home", "2"]).is_some() {
            assert!(row_with(&stdout, &["PAGE", "HITS"]).is_some(), "{stdout}");
            break;
        }
        assert!(start.elapsed() < WAIT, "no row for home: {stdout}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // SHOW QUERIES and DESCRIBE carry the running figures.
    let out = shell(&server, &["-e", "SHOW QUERIES; DESCRIBE PAGES;"], &home);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        row_with(&stdout, &["CTAS_PAGES_0", "RUNNING", "3", "0"]).is_some(),
        "{stdout}"
    );
    assert!(
        stdout.contains("records-in: 3, records-out: 3, state-rows: 2"),
        "{stdout}"
    );

    // EXPLAIN shows the running query's plan and counters.
    let out = shell(&server, &["-e", "EXPLAIN CTAS_PAGES_0;"], &home);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        row_with(&stdout, &["Sources", "CLICKS"]).is_some(),
        "{stdout}"
    );
    assert!(row_with(&stdout, &["recordsIn", "3"]).is_some(), "{stdout}");
    let plan = stdout
        .lines()
        .find(|l| l.contains("sink topic PAGES"))
        .unwrap_or_default();
    assert!(plan.contains("output -> "), "{stdout}");

    // PRINT shows a topic's records with the formats it detects.
    let out = shell(
        &server,
        &["-e", "PRINT 'clicks' FROM BEGINNING LIMIT 2;"],
        &home,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with("Key format: KAFKA_STRING\nValue format: JSON\n"),
        "{stdout}"
    );
    let records: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("rowtime: "))
        .collect();
    assert_eq!(records.len(), 2, "{stdout}");
    assert!(
        records[0].contains("key: u1, value: {") && records[0].ends_with("partition: 0"),
        "{stdout}"
    );
    let out = shell(&server, &["-e", "PRINT 'no_such_topic';"], &home);
    assert_eq!(out.status.code(), Some(1));

    // An error: non-zero exit, the server's message, nothing after it run.
    let out = shell(
        &server,
        &[
            "-e",
            "SELECT * FROM NO_SUCH_TABLE; CREATE STREAM AFTER_ERROR AS SELECT * FROM CLICKS;",
        ],
        &home,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).to_uppercase().contains("NO_SUCH_TABLE"),
        "{}",
        text(&out.stderr)
    );
    let streams = shell(&server, &["-e", "SHOW STREAMS;"], &home);
    assert!(
        !text(&streams.stdout).contains("AFTER_ERROR"),
        "{}",
        text(&streams.stdout)
    );

    // A script: SET sent as a property (the push query reads from the
    // start), RUN SCRIPT, a push query that ends at its LIMIT.
    let inner = home.join("describe.sql");
    std::fs::write(&inner, "DESCRIBE CLICKS;\n").expect("write");
    let script = home.join("script.sql");
    std::fs::write(
        &script,
        format!(
            "-- a comment\nSET 'auto.offset.reset' = 'earliest';\nRUN SCRIPT '{}';\n\
             SELECT ID, PAGE\n  FROM CLICKS\n  EMIT CHANGES LIMIT 3;\n",
            inner.display()
        ),
    )
    .expect("write");
    let out = shell(&server, &["-f", script.to_str().expect("path")], &home);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        row_with(&stdout, &["PAGE", "VARCHAR(STRING)"]).is_some()
            || row_with(&stdout, &["PAGE", "STRING"]).is_some(),
        "{stdout}"
    );
    for (id, page) in [("u1", "home"), ("u2", "home"), ("u3", "docs")] {
        assert!(row_with(&stdout, &[id, page]).is_some(), "{stdout}");
    }
    assert!(stdout.contains("Query ended"), "{stdout}");

    // A script that cannot be read, and a statement without its `;` in a
    // script run by RUN SCRIPT, both fail the run.
    let out = shell(&server, &["-e", "RUN SCRIPT '/no/such/file.sql';"], &home);
    assert_eq!(out.status.code(), Some(1));
    let out = shell(&server, &["-f", "/no/such/file.sql"], &home);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("reading /no/such/file.sql"));
    let unterminated = home.join("unterminated.sql");
    std::fs::write(&unterminated, "SHOW TABLES").expect("write");
    let out = shell(
        &server,
        &["-e", &format!("RUN SCRIPT '{}';", unterminated.display())],
        &home,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_eq!(server.state.push.running(), 0);
}

#[test]
fn credentials_are_sent_when_the_server_requires_them() {
    let ctx = Arc::new(KsqlContext::with_backend(
        Arc::new(EmbeddedTopics::new()),
        64,
    ));
    let config = ServerConfig {
        auth: Some(sluice_server::auth::Auth::Basic {
            user: "ana".into(),
            password: "s3cret".into(),
        }),
        ..ServerConfig::default()
    };
    let state = AppState::new(ctx.clone(), "auth-test", config);
    let http = tokio::runtime::Runtime::new().expect("tokio");
    let listener = http
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let url = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("addr").port()
    );
    let app = router(state);
    http.spawn(async move { axum::serve(listener, app).await });
    let home = scratch("auth");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["shell", "--server", &url, "-e", "SHOW STREAMS;"])
            .args(extra)
            .env("HOME", &home)
            .output()
            .expect("run sluice shell")
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Unauthorized"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["--user", "ana", "--password", "wrong"]);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&["-u", "ana", "-p", "s3cret"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Stream Name"),
        "{}",
        text(&out.stdout)
    );
}

/// A child on a pseudo-terminal and everything it printed.
struct Terminal {
    child: Child,
    master: std::fs::File,
    output: Arc<Mutex<Vec<u8>>>,
    /// Output before this offset was matched already.
    seen: usize,
}

impl Terminal {
    fn spawn(server: &Server, home: &Path) -> Terminal {
        let size = nix::pty::Winsize {
            ws_row: 50,
            ws_col: 200,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        command
            .args(["shell", "--server", &server.url])
            .env("HOME", home)
            .env("TERM", "xterm")
            .env_remove("XDG_STATE_HOME")
            .stdin(Stdio::from(slave.try_clone().expect("fd")))
            .stdout(Stdio::from(slave.try_clone().expect("fd")))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec: the
        // child leads a new session whose controlling terminal is the pty,
        // so Ctrl-C typed there reaches it as SIGINT.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("spawn sluice shell");
        let master = std::fs::File::from(pty.master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().expect("fd");
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the child has gone ends the loop.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("lock").extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            child,
            master,
            output,
            seen: 0,
        }
    }

    fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).expect("type");
        self.master.flush().expect("flush");
    }

    /// Waits until `pattern` is printed after what was matched before;
    /// answers the output up to and with it. Output is compared without
    /// terminal escapes and carriage returns, so a prompt at the start of
    /// a line is `"\nsluice> "` while rustyline's repaints of the line
    /// being typed are not.
    fn expect(&mut self, pattern: &str) -> String {
        let start = Instant::now();
        loop {
            let shown = plain(&self.output.lock().expect("lock"));
            let fresh = shown.get(self.seen..).unwrap_or_default();
            if let Some(at) = fresh.find(pattern) {
                let end = at + pattern.len();
                let text = fresh[..end].to_string();
                self.seen += end;
                return text;
            }
            if start.elapsed() > WAIT {
                panic!("no {pattern:?} in the terminal; it shows:\n{fresh}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a fresh prompt; answers what was printed before it.
    fn prompt(&mut self) -> String {
        self.expect("\nsluice> ")
    }

    fn exit(mut self) {
        self.send("exit\r");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "shell exited with {status}");
                return;
            }
            assert!(start.elapsed() < WAIT, "the shell did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Terminal output without escape sequences and carriage returns.
fn plain(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    // Parameters, then one final byte in '@'..='~'.
                    for d in chars.by_ref() {
                        if ('@'..='~').contains(&d) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn interactive_session_in_a_terminal() {
    let server = start_server();
    let home = scratch("pty");
    server
        .ctx
        .execute("INSERT INTO CLICKS (ID, PAGE, N) VALUES ('old1', 'home', 1);")
        .expect("insert");

    let mut term = Terminal::spawn(&server, &home);
    term.prompt();

    // A statement over two lines, then its table.
    term.send("SHOW\r");
    term.expect("\n      > ");
    term.send("TABLES;\r");
    let shown = term.prompt();
    assert!(row_with(&shown, &["PAGES", "JSON"]).is_some(), "{shown}");

    // Tab completes a column name fetched from the server (`HI` alone
    // would be an unknown column).
    term.send("SELECT PAGE, HI\t FROM PAGES WHERE PAGE = 'home';\r");
    let shown = term.prompt();
    assert!(row_with(&shown, &["PAGE", "HITS"]).is_some(), "{shown}");
    assert!(row_with(&shown, &["home", "1"]).is_some(), "{shown}");

    // A push query streams rows until Ctrl-C, which closes it on the
    // server and gives the prompt back.
    term.send("SET 'auto.offset.reset' = 'earliest';\r");
    term.expect("Successfully changed local property");
    term.send("SELECT ID, PAGE FROM CLICKS EMIT CHANGES;\r");
    term.expect("Press Ctrl-C");
    term.expect("old1");
    assert_eq!(server.state.push.running(), 1);
    server
        .ctx
        .execute("INSERT INTO CLICKS (ID, PAGE, N) VALUES ('live1', 'docs', 2);")
        .expect("insert");
    term.expect("live1");
    term.send("\x03");
    term.expect("Query terminated");
    term.prompt();
    let start = Instant::now();
    while server.state.push.running() != 0 {
        assert!(start.elapsed() < WAIT, "the push query still runs");
        std::thread::sleep(Duration::from_millis(20));
    }

    // PRINT follows the topic until Ctrl-C.
    term.send("PRINT 'clicks' FROM BEGINNING;\r");
    term.expect("key: old1");
    server
        .ctx
        .execute("INSERT INTO CLICKS (ID, PAGE, N) VALUES ('live2', 'docs', 3);")
        .expect("insert");
    term.expect("key: live2");
    term.send("\x03");
    term.expect("Topic printing ceased");
    term.prompt();

    // An error keeps the shell running.
    term.send("DESCRIBE NO_SUCH_SOURCE;\r");
    term.expect("NO_SUCH_SOURCE");
    term.prompt();
    term.exit();

    // History is kept across sessions: Up brings back the last statement.
    let history = std::fs::read_to_string(home.join(".sluice_history")).expect("history file");
    assert!(
        history.contains("SELECT ID, PAGE FROM CLICKS EMIT CHANGES;"),
        "{history}"
    );
    let mut term = Terminal::spawn(&server, &home);
    term.prompt();
    term.send("\x1b[A");
    term.expect("sluice> DESCRIBE NO_SUCH_SOURCE;");
    // Ctrl-C at the prompt drops the line and gives a fresh prompt.
    term.send("\x03");
    term.prompt();
    term.exit();
}
