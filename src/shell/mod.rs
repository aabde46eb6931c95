//! `sluice shell`: an interactive SQL shell for analysts, in the manner of
//! ksqlDB's CLI, speaking only the REST API ([`client`]).
//!
//! It owns the session: properties set with `SET`/`UNSET` (sent as
//! `streamsProperties` with every request), statement splitting and local
//! commands ([`script`]), rendering ([`render`]), completion
//! ([`complete`]), history kept in a file across sessions, and Ctrl-C,
//! which closes a running push query on the server ([`interrupt`]).
//! With `-e` or `-f` (or a script on standard input) it runs the
//! statements, stops at the first error and exits non-zero.

mod client;
mod complete;
mod interrupt;
mod render;
mod script;

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use serde_json::{Map, Value};

use client::{Client, QueryMessage};
use complete::ShellHelper;
use script::Action;

/// Scripts may run scripts, this deep at most (a script running itself
/// would otherwise never end).
const MAX_SCRIPT_DEPTH: usize = 16;

/// How long a closed push query may take to end its stream.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct ShellArgs {
    /// The server: Sluice or ksqlDB.
    #[arg(long, default_value = "http://127.0.0.1:8088")]
    server: String,
    /// User name for HTTP basic auth (with --password).
    #[arg(short = 'u', long, requires = "password", conflicts_with = "token")]
    user: Option<String>,
    /// Password for HTTP basic auth (with --user).
    #[arg(short = 'p', long, requires = "user")]
    password: Option<String>,
    /// Bearer token sent with every request.
    #[arg(long)]
    token: Option<String>,
    /// Run the statements of this file, then exit (non-zero on an error).
    #[arg(short = 'f', long = "file", conflicts_with = "execute")]
    file: Option<PathBuf>,
    /// Run these statements, then exit (non-zero on an error).
    #[arg(short = 'e', long = "execute")]
    execute: Option<String>,
}

/// What to do after a statement.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Exit,
}

/// Runs the shell; `Ok(false)` when a non-interactive run met an error.
pub fn run(args: ShellArgs) -> Result<bool> {
    if args.server.starts_with("https://") {
        // The HTTP client is built without TLS to keep the build small.
        eprintln!(
            "{}: the shell speaks plain HTTP only; reach the server over http:// \
             (for example through a local TLS-terminating proxy)",
            args.server
        );
        return Ok(false);
    }
    let authorization = match (&args.user, &args.password, &args.token) {
        (Some(user), Some(password), _) => Some(client::basic_auth(user, password)),
        (_, _, Some(token)) => Some(format!("Bearer {token}")),
        _ => None,
    };
    let client = Client::new(&args.server, authorization);
    let mut shell = Shell {
        client,
        properties: Map::new(),
        names_stale: true,
        depth: 0,
    };
    let script = match read_script(&args) {
        Ok(script) => script,
        Err(e) => {
            eprintln!("{e:#}");
            return Ok(false);
        }
    };
    match script {
        Some(text) => {
            interrupt::install(true);
            match shell.run_text(&text, true) {
                Ok(_) => Ok(true),
                Err(e) => {
                    eprintln!("{e:#}");
                    Ok(false)
                }
            }
        }
        None => {
            interrupt::install(false);
            shell.interactive()?;
            Ok(true)
        }
    }
}

/// The statements of `-f`, `-e` or a non-terminal standard input; `None`
/// for an interactive session.
fn read_script(args: &ShellArgs) -> Result<Option<String>> {
    Ok(match (&args.file, &args.execute) {
        (Some(file), _) => Some(
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?,
        ),
        (None, Some(text)) => Some(text.clone()),
        (None, None) if !std::io::stdin().is_terminal() => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading statements from standard input")?;
            Some(text)
        }
        (None, None) => None,
    })
}

/// Where history is kept: `$XDG_STATE_HOME/sluice/history`, else
/// `~/.sluice_history`.
fn history_file() -> Option<PathBuf> {
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
        let dir = PathBuf::from(state).join("sluice");
        // Without the folder there is no history file; the shell works on.
        let _ = std::fs::create_dir_all(&dir);
        return Some(dir.join("history"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".sluice_history"))
}

struct Shell {
    client: Client,
    properties: Map<String, Value>,
    /// A statement may have created or dropped sources since completion
    /// names were fetched.
    names_stale: bool,
    /// Scripts being run, outermost first.
    depth: usize,
}

impl Shell {
    fn interactive(&mut self) -> Result<()> {
        let config = rustyline::Config::builder()
            .auto_add_history(false)
            .max_history_size(10_000)
            .context("configuring line editing")?
            .build();
        let mut editor: rustyline::Editor<ShellHelper, DefaultHistory> =
            rustyline::Editor::with_config(config).context("starting line editing")?;
        editor.set_helper(Some(ShellHelper::default()));
        let history = history_file();
        if let Some(path) = &history {
            // No file yet is the first session.
            let _ = editor.load_history(path);
        }
        match self.client.info() {
            Ok(info) => {
                let info = &info["KsqlServerInfo"];
                println!(
                    "Connected to {} (server version {}, service id {}).",
                    self.client.server(),
                    render::cell(&info["version"]),
                    render::cell(&info["ksqlServiceId"]),
                );
            }
            Err(e) => eprintln!("Warning: {e:#}"),
        }
        println!("Statements end with ';'. Ctrl-C stops a push query; Ctrl-D or EXIT leaves.");
        let mut buffer = String::new();
        loop {
            if self.names_stale {
                if let Some(helper) = editor.helper_mut() {
                    helper.refresh(&self.client, &self.properties);
                }
                self.names_stale = false;
            }
            let prompt = if buffer.is_empty() {
                "sluice> "
            } else {
                "      > "
            };
            let line = match editor.readline(prompt) {
                Ok(line) => line,
                Err(ReadlineError::Interrupted) => {
                    // Ctrl-C at the prompt drops the unfinished statement.
                    buffer.clear();
                    continue;
                }
                Err(ReadlineError::Eof) => break,
                Err(e) => return Err(anyhow!("reading input: {e}")),
            };
            if buffer.is_empty() && script::is_blank(&line) {
                continue;
            }
            if !buffer.is_empty() {
                buffer.push('\n');
            }
            buffer.push_str(&line);
            // EXIT and QUIT need no semicolon, as in ksqlDB's CLI.
            if matches!(script::classify(&buffer), Ok(Action::Exit)) {
                break;
            }
            let split = script::split(&buffer);
            if split.statements.is_empty() {
                continue;
            }
            let entered = buffer.trim().to_string();
            let _ = editor.add_history_entry(entered);
            if let Some(path) = &history
                && let Err(e) = editor.save_history(path)
            {
                eprintln!("Warning: cannot save history to {}: {e}", path.display());
            }
            buffer = if script::is_blank(&split.rest) {
                String::new()
            } else {
                split.rest.trim_start().to_string()
            };
            let mut exit = false;
            for statement in &split.statements {
                match self.execute(statement) {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Exit) => {
                        exit = true;
                        break;
                    }
                    Err(e) => {
                        eprintln!("{e:#}");
                        break;
                    }
                }
            }
            if exit {
                break;
            }
        }
        Ok(())
    }

    /// Runs every statement of `text`, stopping at the first error; with
    /// `lenient_end` a last statement without `;` runs too.
    fn run_text(&mut self, text: &str, lenient_end: bool) -> Result<Flow> {
        let split = script::split(text);
        let mut statements = split.statements;
        if !script::is_blank(&split.rest) {
            if lenient_end {
                statements.push(split.rest.trim().to_string());
            } else {
                return Err(anyhow!(
                    "the last statement has no closing ';': {}",
                    split.rest.trim()
                ));
            }
        }
        for statement in &statements {
            if self.execute(statement)? == Flow::Exit {
                return Ok(Flow::Exit);
            }
        }
        Ok(Flow::Continue)
    }

    fn execute(&mut self, statement: &str) -> Result<Flow> {
        let action = script::classify(statement).map_err(|e| anyhow!(e))?;
        match action {
            Action::Exit => return Ok(Flow::Exit),
            Action::Set(name, value) => {
                println!("Successfully changed local property '{name}' to '{value}'.");
                self.properties.insert(name, Value::String(value));
            }
            Action::Unset(name) => match self.properties.remove(&name) {
                Some(old) => println!(
                    "Successfully unset local property '{name}' (value was '{}').",
                    render::cell(&old)
                ),
                None => return Err(anyhow!("The property '{name}' was not set.")),
            },
            Action::RunScript(file) => return self.run_script(Path::new(&file)),
            Action::Query { push } => self.query(statement, push)?,
            Action::Print => self.print(statement)?,
            Action::Ksql => {
                let entities = self.client.ksql(statement, &self.properties)?;
                for e in &entities {
                    println!("{}", render::entity(e));
                }
                let first = statement
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_uppercase();
                if matches!(first.as_str(), "CREATE" | "DROP") {
                    self.names_stale = true;
                }
            }
        }
        Ok(Flow::Continue)
    }

    fn run_script(&mut self, file: &Path) -> Result<Flow> {
        if self.depth >= MAX_SCRIPT_DEPTH {
            return Err(anyhow!(
                "RUN SCRIPT nested more than {MAX_SCRIPT_DEPTH} deep (does a script run itself?)"
            ));
        }
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("RUN SCRIPT: reading {}", file.display()))?;
        self.depth += 1;
        let result = self.run_text(&text, false);
        self.depth -= 1;
        result.with_context(|| format!("in script {}", file.display()))
    }

    /// Streams a topic's records until the server ends (LIMIT) or Ctrl-C.
    /// The server sends an empty line every second while idle, so the
    /// reading thread notices it should stop and drops the connection,
    /// which ends the print on the server.
    fn print(&mut self, statement: &str) -> Result<()> {
        let mut lines = self.client.print(statement, &self.properties)?;
        let (tx, rx) = mpsc::channel::<Result<String>>();
        std::thread::spawn(move || {
            loop {
                let mut line = String::new();
                match lines.read_line(&mut line) {
                    Ok(0) => return,
                    Ok(_) => {
                        if tx.send(Ok(line)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(anyhow!("reading the topic: {e}")));
                        return;
                    }
                }
            }
        });
        let watch = interrupt::Watch::start();
        let out = std::io::stdout();
        let mut stopped = false;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(line)) if line.trim().is_empty() => {}
                Ok(Ok(line)) => {
                    let mut out = out.lock();
                    let _ = write!(out, "{line}");
                    let _ = out.flush();
                }
                Ok(Err(e)) => return Err(e),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if watch.interrupted() {
                stopped = true;
                break;
            }
        }
        if stopped {
            println!("Topic printing ceased");
        }
        Ok(())
    }

    fn query(&mut self, statement: &str, push: bool) -> Result<()> {
        let mut stream = self.client.query(statement, &self.properties)?;
        if !push {
            let mut rows = Vec::new();
            while let Some(message) = stream.next_message() {
                match message? {
                    QueryMessage::Row(row) => rows.push(row),
                    QueryMessage::Error(e) => return Err(anyhow!(e)),
                }
            }
            println!("{}", render::rows(&stream.columns, &rows));
            return Ok(());
        }
        let id = stream.query_id.clone();
        let (mut table, header) = render::StreamTable::start(&stream.columns);
        println!("{header}");
        println!("Press Ctrl-C to stop the query.");
        // Rows are read on their own thread so Ctrl-C is seen while the
        // server sends nothing.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            while let Some(message) = stream.next_message() {
                if tx.send(message).is_err() {
                    return;
                }
            }
        });
        let watch = interrupt::Watch::start();
        let mut closed_at: Option<Instant> = None;
        let mut failure = None;
        let out = std::io::stdout();
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(QueryMessage::Row(row))) => {
                    let mut out = out.lock();
                    let _ = writeln!(out, "{}", table.row(&row));
                    let _ = out.flush();
                }
                Ok(Ok(QueryMessage::Error(e))) => {
                    failure = Some(e);
                    break;
                }
                Ok(Err(e)) => {
                    failure = Some(format!("{e:#}"));
                    break;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            match closed_at {
                None if watch.interrupted() => {
                    closed_at = Some(Instant::now());
                    if let Err(e) = self.client.close_query(&id) {
                        failure = Some(format!("closing query {id}: {e:#}"));
                        break;
                    }
                }
                Some(at) if at.elapsed() > CLOSE_WAIT => {
                    failure = Some(format!(
                        "query {id} was closed but the server kept its stream open"
                    ));
                    break;
                }
                _ => {}
            }
        }
        drop(watch);
        println!("{}", table.end());
        if let Some(e) = failure {
            return Err(anyhow!(e));
        }
        if closed_at.is_some() {
            println!("Query terminated");
        } else {
            println!("Query ended");
        }
        Ok(())
    }
}
