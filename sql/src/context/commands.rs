//! The command runner of a cluster member: how a [`KsqlContext`] with a
//! command topic open executes catalog-changing statements.
//!
//! Such a statement is not applied where it arrives. It is checked against
//! the catalog (parsed, and planned where it holds a query, so obviously
//! bad SQL never reaches the topic), appended to the command topic, and
//! applied by every member's runner thread in the topic's order, this
//! member's included; the caller waits, bounded by [`APPLY_TIMEOUT`], for
//! its own offset to be applied here and gets that application's result.
//! Since every member applies the same commands in the same order, they
//! hold the same catalog and number queries alike.
//!
//! Effects outside the catalog happen once: topics are created only if
//! absent, and a `DROP ... DELETE TOPIC` deletes only on the member that
//! sent it. At start a member applies the whole topic before it serves,
//! without such effects (whoever sent those commands carried them out),
//! then keeps following it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Condvar, Mutex};

use super::{KsqlContext, StatementResult, already_exists, result_kind_matches};
use crate::command_topic::{CommandReader, CommandTopic, ReadCommand};
use crate::error::{Result, SqlError};
use crate::parser::{ParsedStatement, SourceKind, Statement};
use crate::statement_err;
use crate::statement_log::LoggedStatement;

/// How long a statement may take to go through the command topic and be
/// applied on the member that received it; also how long a member may
/// take to catch up with the topic before it checks a statement.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// The runner's nap when the topic has nothing new.
const IDLE_NAP: Duration = Duration::from_millis(20);
/// Commands read at a time.
const BATCH: usize = 100;

/// What applying a command did.
pub(crate) enum Outcome {
    Applied(StatementResult),
    /// An "apply only if absent" command whose effect the catalog held.
    Skipped,
}

/// The command topic of a context and how far it has been applied.
pub(super) struct Commands {
    topic: CommandTopic,
    reader: Mutex<CommandReader>,
    /// A reader never read from, asked where the topic ends: the runner
    /// holds `reader` while it polls.
    probe: Mutex<CommandReader>,
    /// This member, as commands name their sender.
    origin: String,
    /// Unique to this run of the member, so command ids never repeat.
    run: String,
    sent: AtomicU64,
    progress: Mutex<Progress>,
    applied: Condvar,
    /// Wakes the idle runner when this member appended a command, so its
    /// sender does not wait out the runner's nap.
    appended: Condvar,
}

struct Progress {
    /// The offset of the next command to apply.
    next: i64,
    /// The commands sent from here and waited for, by command id, with
    /// the result of applying them once applied.
    waiting: HashMap<String, Option<Result<Outcome>>>,
}

impl Commands {
    /// Waits until every command before offset `end` is applied here.
    fn wait_for(&self, end: i64) -> Result<()> {
        let deadline = Instant::now() + APPLY_TIMEOUT;
        let mut progress = self.progress.lock();
        while progress.next < end {
            if self.applied.wait_until(&mut progress, deadline).timed_out() {
                return statement_err!(
                    "this server has applied the command topic {} up to offset {} of {end} and did not catch up within {} s; try again",
                    self.topic.name(),
                    progress.next,
                    APPLY_TIMEOUT.as_secs()
                );
            }
        }
        Ok(())
    }
}

impl KsqlContext {
    /// Makes this context a cluster member sharing its catalog through the
    /// command topic `topic` (created with one partition if absent), as
    /// `origin` (its URL): applies every command the topic holds, then
    /// follows it on a thread of its own. From now on catalog-changing
    /// statements go through the topic. Returns how many commands were
    /// applied before returning.
    ///
    /// Call it on a fresh context, before executing anything the cluster
    /// must share.
    pub fn open_command_topic(self: &Arc<Self>, topic: &str, origin: &str) -> Result<usize> {
        if self.commands.get().is_some() {
            return statement_err!("a command topic is open already");
        }
        let topic = CommandTopic::open(self.runtime.backend().clone(), topic)?;
        let mut reader = topic.reader()?;
        let mut next = 0;
        let mut replayed = 0;
        let mut stalled_since = Instant::now();
        loop {
            let end = reader.end();
            if next >= end {
                break;
            }
            let batch = reader.poll(BATCH)?;
            if batch.is_empty() {
                if stalled_since.elapsed() > APPLY_TIMEOUT {
                    return statement_err!(
                        "command topic {}: read up to offset {next} of {end}, then nothing more came for {} s",
                        topic.name(),
                        APPLY_TIMEOUT.as_secs()
                    );
                }
                std::thread::sleep(IDLE_NAP);
                continue;
            }
            stalled_since = Instant::now();
            for (offset, command) in batch {
                // The result is the same on every member, which reported
                // it (or its error) when the command first ran.
                let _ = self.apply_command(None, offset, command);
                next = offset + 1;
                replayed += 1;
            }
        }
        let probe = topic.reader()?;
        let run = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let commands = Arc::new(Commands {
            topic,
            reader: Mutex::new(reader),
            probe: Mutex::new(probe),
            origin: origin.to_string(),
            run: format!("{run:x}-{}", std::process::id()),
            sent: AtomicU64::new(0),
            progress: Mutex::new(Progress {
                next,
                waiting: HashMap::new(),
            }),
            applied: Condvar::new(),
            appended: Condvar::new(),
        });
        if self.commands.set(commands.clone()).is_err() {
            return statement_err!("a command topic is open already");
        }
        let context = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("sluice-commands".into())
            .spawn(move || run_commands(context, commands))
            .map_err(|e| SqlError::Statement(format!("starting the command runner: {e}")))?;
        Ok(replayed)
    }

    /// The offset of the last command of the command topic this member
    /// has applied; `None` without a command topic, before it is read
    /// to its end at start, or before any command.
    pub fn last_applied_command(&self) -> Option<i64> {
        let next = self.commands.get()?.progress.lock().next;
        (next > 0).then_some(next - 1)
    }

    /// Waits until this member has applied the command at offset
    /// `sequence` of the command topic (a client's
    /// `commandSequenceNumber`), so what it executes next sees the effect
    /// of that command. Without a command topic there is nothing to wait
    /// for.
    pub fn await_command(&self, sequence: i64) -> Result<()> {
        match self.commands.get() {
            Some(commands) => commands.wait_for(sequence.saturating_add(1)),
            None => Ok(()),
        }
    }

    /// Whether statements that change the catalog go through a command
    /// topic.
    pub fn has_command_topic(&self) -> bool {
        self.commands.get().is_some()
    }

    /// Sends `parsed` through the command topic and waits until it is
    /// applied here; returns the outcome and the command's offset (none
    /// for an "if absent" statement found applied without sending it).
    pub(super) fn submit(
        &self,
        commands: &Commands,
        parsed: &ParsedStatement,
        if_absent: bool,
    ) -> Result<(Outcome, Option<i64>)> {
        // Checked against a catalog holding everything sent before, on
        // any member.
        let end = commands.probe.lock().end();
        commands.wait_for(end)?;
        if if_absent && self.already_applied(parsed) {
            return Ok((Outcome::Skipped, None));
        }
        self.check(parsed)?;
        let id = format!(
            "{}/{}/{}",
            commands.origin,
            commands.run,
            commands.sent.fetch_add(1, Ordering::SeqCst)
        );
        commands.progress.lock().waiting.insert(id.clone(), None);
        let command = LoggedStatement {
            sql: parsed.text.clone(),
            query_id: None,
            origin: Some(commands.origin.clone()),
            command_id: Some(id.clone()),
            if_absent,
            properties: Some(self.properties.lock().clone()),
        };
        let offset = match commands.topic.append(&command) {
            Ok(offset) => offset,
            Err(e) => {
                commands.progress.lock().waiting.remove(&id);
                return Err(e);
            }
        };
        let deadline = Instant::now() + APPLY_TIMEOUT;
        let mut progress = commands.progress.lock();
        commands.appended.notify_all();
        loop {
            if let Some(Some(_)) = progress.waiting.get(&id) {
                let outcome = progress.waiting.remove(&id).flatten();
                return match outcome {
                    Some(outcome) => outcome.map(|o| (o, Some(offset))),
                    None => statement_err!("the result of command {offset} went missing"),
                };
            }
            if commands
                .applied
                .wait_until(&mut progress, deadline)
                .timed_out()
            {
                progress.waiting.remove(&id);
                return statement_err!(
                    "the statement is in the command topic {} at offset {offset}, but this server did not apply it within {} s (it has applied up to offset {}); it takes effect when the server catches up",
                    commands.topic.name(),
                    APPLY_TIMEOUT.as_secs(),
                    progress.next
                );
            }
        }
    }

    /// Applies one command read from the topic. `origin` is this member's
    /// while it follows the topic, `None` while it replays it at start:
    /// then no command is this member's to carry out effects for.
    fn apply_command(
        &self,
        origin: Option<&str>,
        offset: i64,
        command: std::result::Result<LoggedStatement, String>,
    ) -> Result<Outcome> {
        let command = match command {
            Ok(c) => c,
            Err(why) => {
                // Not written by a member: every member skips it alike.
                tracing::error!(offset, "command topic: skipping a record: {why}");
                return statement_err!("command {offset} is not a command: {why}");
            }
        };
        if let Some(properties) = &command.properties {
            self.adopt_properties(properties);
        }
        let own = origin.is_some() && command.origin.as_deref() == origin;
        self.replaying.store(!own, Ordering::SeqCst);
        // A bug that panics on one command must not stop the runner: every
        // later statement would wait for it in vain.
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.apply_logged(&command)))
                .unwrap_or_else(|_| statement_err!("applying command {offset} panicked (a bug)"));
        self.replaying.store(false, Ordering::SeqCst);
        match &outcome {
            Ok(Outcome::Applied(_)) => {
                tracing::debug!(offset, sql = %command.sql, "command applied")
            }
            Ok(Outcome::Skipped) => {
                tracing::debug!(offset, sql = %command.sql, "command skipped: already applied")
            }
            // It fails alike on every member; its sender reports it.
            Err(e) => tracing::info!(offset, sql = %command.sql, "command failed: {e}"),
        }
        outcome
    }

    /// Makes `properties` the ones in force, as they were where a command
    /// was sent. In a cluster the properties are the cluster's: each
    /// command brings its sender's.
    fn adopt_properties(&self, properties: &BTreeMap<String, String>) {
        let current = self.properties.lock().clone();
        for name in current.keys().filter(|n| !properties.contains_key(*n)) {
            self.properties.lock().remove(name);
            self.functions.set_property(name, None);
        }
        for (name, value) in properties {
            if current.get(name) != Some(value) {
                self.set_property(name, value);
            }
        }
    }

    /// Rejects what would certainly fail when applied, before it reaches
    /// the topic: a name taken or missing, a query that does not plan.
    /// What passes may still fail when applied (the catalog may change in
    /// between, topics may be refused); that failure is the same on every
    /// member and reported to the caller.
    fn check(&self, parsed: &ParsedStatement) -> Result<()> {
        let catalog = self.catalog.lock();
        match &parsed.statement {
            Statement::CreateSource(create) => {
                if let Some(existing) = catalog.source(&create.name)
                    && !create.if_not_exists
                    && !create.or_replace
                {
                    return Err(already_exists(create.kind, &create.name, existing.kind));
                }
            }
            Statement::CreateAsSelect(create) => {
                if let Some(existing) = catalog.source(&create.name) {
                    if create.if_not_exists {
                        return Ok(());
                    }
                    return Err(already_exists(create.kind, &create.name, existing.kind));
                }
                let planned = self
                    .plan_context(&catalog)
                    .plan(&create.query, &create.name)?;
                result_kind_matches(create.kind, planned.kind)?;
            }
            Statement::InsertInto {
                target,
                query,
                line,
                column,
                ..
            } => {
                if catalog.source(target).is_none() {
                    return statement_err!(
                        "Line: {line}, Col: {column}: Source `{target}` does not exist."
                    );
                }
                self.plan_context(&catalog).plan(query, target)?;
            }
            Statement::Drop {
                kind,
                name,
                if_exists: false,
                ..
            } if catalog.source(name).is_none() => {
                return statement_err!(
                    "{} {name} does not exist.",
                    if *kind == SourceKind::Stream {
                        "Stream"
                    } else {
                        "Table"
                    }
                );
            }
            Statement::Terminate { query_id: Some(id) } => {
                let id = id.to_uppercase();
                if catalog.query(&id).is_none() {
                    return statement_err!("Unknown queryId: {id}");
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The runner: applies the topic's commands as they come, for as long as
/// the context lives, and hands the waiting senders their results.
fn run_commands(context: Weak<KsqlContext>, commands: Arc<Commands>) {
    let mut failing = false;
    loop {
        let Some(ctx) = context.upgrade() else {
            return;
        };
        let polled = commands.reader.lock().poll(BATCH);
        let batch: Vec<ReadCommand> = match polled {
            Ok(batch) => {
                if failing {
                    tracing::info!("reading the command topic again");
                    failing = false;
                }
                batch
            }
            Err(e) => {
                if !failing {
                    tracing::warn!("reading the command topic: {e}; retrying");
                    failing = true;
                }
                drop(ctx);
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        };
        if batch.is_empty() {
            drop(ctx);
            // While a sender here waits, poll again at once (a poll waits
            // a little for a fetch itself); else nap until one appends.
            let mut progress = commands.progress.lock();
            if progress.waiting.is_empty() {
                commands.appended.wait_for(&mut progress, IDLE_NAP);
            }
            continue;
        }
        for (offset, command) in batch {
            let id = command.as_ref().ok().and_then(|c| c.command_id.clone());
            let outcome = ctx.apply_command(Some(&commands.origin), offset, command);
            ctx.release_after(offset);
            let mut progress = commands.progress.lock();
            progress.next = offset + 1;
            if let Some(slot) = id.and_then(|id| progress.waiting.get_mut(&id)) {
                *slot = Some(outcome);
            }
            drop(progress);
            commands.applied.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command_topic::command_topic_name;
    use sluice_connectors::EmbeddedTopics;
    use sluice_engine::topic::TopicBackend;

    const TOPIC: &str = "_sluice-test_-command_topic";

    fn member(backend: &Arc<dyn TopicBackend>, origin: &str) -> Arc<KsqlContext> {
        let ctx = Arc::new(KsqlContext::with_backend(backend.clone(), 64));
        ctx.open_command_topic(TOPIC, origin)
            .expect("command topic");
        ctx
    }

    fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn queries(ctx: &KsqlContext) -> Vec<(String, String)> {
        ctx.catalog
            .lock()
            .queries()
            .map(|q| (q.id.clone(), q.sink.clone()))
            .collect()
    }

    fn one(ctx: &KsqlContext, sql: &str) -> Result<(StatementResult, Option<i64>)> {
        let parsed = crate::parser::parse_statements(sql)?;
        assert_eq!(parsed.len(), 1);
        ctx.execute_statement_sequenced(&parsed[0])
    }

    fn commands_in_topic(backend: &Arc<dyn TopicBackend>) -> i64 {
        CommandTopic::open(backend.clone(), TOPIC)
            .and_then(|t| t.reader())
            .map(|r| r.end())
            .expect("command topic")
    }

    #[test]
    fn the_name_follows_the_service_id() {
        assert_eq!(command_topic_name("test_"), TOPIC);
    }

    #[test]
    fn members_apply_each_others_statements_with_the_same_query_ids() {
        let backend: Arc<dyn TopicBackend> = Arc::new(EmbeddedTopics::new());
        let a = member(&backend, "a");
        let b = member(&backend, "b");
        let (_, first) = one(
            &a,
            "CREATE STREAM plays (player STRING KEY, points INT) WITH (kafka_topic='plays', value_format='JSON', partitions=2);",
        )
        .expect("create");
        assert_eq!(first, Some(0));
        let (started, second) = one(
            &a,
            "CREATE TABLE totals AS SELECT player, SUM(points) AS points FROM plays GROUP BY player;",
        )
        .expect("ctas");
        assert_eq!(second, Some(1));
        let StatementResult::QueryStarted { query_id, .. } = started else {
            panic!("no query started: {started:?}");
        };
        eventually("b to run the query", || !queries(&b).is_empty());
        assert_eq!(queries(&a), queries(&b));
        assert_eq!(queries(&b), vec![(query_id.clone(), "TOTALS".to_string())]);
        assert!(b.source("PLAYS").is_some());

        // Sent to b, applied on a too.
        let (_, third) = one(&b, &format!("TERMINATE {query_id};")).expect("terminate");
        assert_eq!(third, Some(2));
        eventually("a to stop the query", || queries(&a).is_empty());
        assert!(a.runtime().states().is_empty());
        one(&b, "DROP TABLE totals;").expect("drop");
        eventually("a to drop the table", || a.source("TOTALS").is_none());

        // A member started now rebuilds the catalog from the topic, and
        // numbers its next query as the others do.
        let c = member(&backend, "c");
        assert!(c.source("PLAYS").is_some() && c.source("TOTALS").is_none());
        let (started, _) = one(
            &c,
            "CREATE TABLE best AS SELECT player, MAX(points) AS top FROM plays GROUP BY player;",
        )
        .expect("ctas");
        let StatementResult::QueryStarted { query_id, .. } = started else {
            panic!("no query started: {started:?}");
        };
        assert_eq!(query_id, "CTAS_BEST_1");
        for member in [&a, &b] {
            eventually("every member to run the new query", || {
                queries(member) == vec![(query_id.clone(), "BEST".to_string())]
            });
        }
    }

    #[test]
    fn a_command_is_applied_under_the_properties_of_its_sender() {
        let backend: Arc<dyn TopicBackend> = Arc::new(EmbeddedTopics::new());
        let a = member(&backend, "a");
        let b = member(&backend, "b");
        // A client's session property on a, not a SET: b learns it with
        // the statement that needs it.
        a.set_property("ksql.persistence.default.format.value", "JSON");
        let (_, offset) = one(
            &a,
            "CREATE STREAM s (k INT KEY, v INT) WITH (kafka_topic='s', partitions=1);",
        )
        .expect("create with the default value format");
        b.await_command(offset.expect("an offset"))
            .expect("applied");
        assert!(b.source("S").is_some(), "b could not apply it");
        // Unset on the sender, unset everywhere with its next command.
        a.properties
            .lock()
            .remove("ksql.persistence.default.format.value");
        let err = one(
            &a,
            "CREATE STREAM t (k INT KEY, v INT) WITH (kafka_topic='t', partitions=1);",
        )
        .expect_err("no value format");
        assert!(err.to_string().contains("VALUE_FORMAT"), "{err}");
        b.await_command(1).expect("applied");
        assert!(b.source("T").is_none());
        assert!(b.properties.lock().is_empty());
    }

    #[test]
    fn bad_statements_are_refused_before_they_reach_the_topic() {
        let backend: Arc<dyn TopicBackend> = Arc::new(EmbeddedTopics::new());
        let a = member(&backend, "a");
        for sql in [
            "CREATE TABLE t AS SELECT x, COUNT(*) FROM missing GROUP BY x;",
            "DROP STREAM missing;",
            "TERMINATE CTAS_NONE_7;",
            "INSERT INTO missing SELECT * FROM other;",
        ] {
            let err = one(&a, sql).expect_err("refused");
            assert!(!err.to_string().is_empty(), "{sql}");
        }
        assert_eq!(commands_in_topic(&backend), 0);
        // A syntax error never gets that far: the caller sees its position.
        let err = a.execute("CREATE STREAM (;").expect_err("syntax");
        assert!(err.line > 0 && err.column > 0, "{err:?}");
        assert_eq!(commands_in_topic(&backend), 0);
    }

    #[test]
    fn a_command_failing_when_applied_fails_on_every_member_and_is_reported() {
        let backend: Arc<dyn TopicBackend> = Arc::new(EmbeddedTopics::new());
        let a = member(&backend, "a");
        let b = member(&backend, "b");
        // Passes the check (the name is free) but fails when applied: no
        // topic and no PARTITIONS to create one.
        let err = one(
            &a,
            "CREATE STREAM s (k INT KEY, v INT) WITH (kafka_topic='nowhere', value_format='JSON');",
        )
        .expect_err("fails");
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert_eq!(commands_in_topic(&backend), 1);
        b.await_command(0).expect("b applied it");
        assert!(a.source("S").is_none() && b.source("S").is_none());
    }

    #[test]
    fn a_script_loaded_by_two_members_at_once_takes_effect_once() {
        let backend: Arc<dyn TopicBackend> = Arc::new(EmbeddedTopics::new());
        let script = "
            CREATE STREAM plays (player STRING KEY, points INT)
              WITH (kafka_topic='plays', value_format='JSON', partitions=2);
            CREATE STREAM all_plays (player STRING KEY, points INT)
              WITH (kafka_topic='all_plays', value_format='JSON', partitions=2);
            INSERT INTO all_plays SELECT * FROM plays;
            CREATE TABLE totals AS SELECT player, COUNT(*) AS n FROM plays GROUP BY player;
        ";
        let a = member(&backend, "a");
        let b = member(&backend, "b");
        let loads: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .map(|ctx| std::thread::spawn(move || ctx.execute_new(script).map(|(_, s)| s)))
            .collect();
        let skipped: usize = loads
            .into_iter()
            .map(|t| t.join().expect("thread").expect("loaded"))
            .sum();
        // Four statements took effect once; the other copy of each was
        // skipped, where it was sent or where it was applied.
        assert_eq!(skipped, 4);
        b.await_command(commands_in_topic(&backend) - 1)
            .expect("caught up");
        a.await_command(commands_in_topic(&backend) - 1)
            .expect("caught up");
        let ids: Vec<String> = queries(&a).into_iter().map(|(id, _)| id).collect();
        // Skipped commands took no query number.
        assert_eq!(ids, vec!["CTAS_TOTALS_1", "INSERTQUERY_0"]);
        assert_eq!(queries(&a), queries(&b));
        // Loaded again at a restart, the script sends nothing.
        let before = commands_in_topic(&backend);
        let (_, skipped) = a.execute_new(script).expect("reloaded");
        assert_eq!(skipped, 4);
        assert_eq!(commands_in_topic(&backend), before);
    }

    /// Embedded topics that count the deletes asked of them.
    struct CountingDeletes {
        topics: EmbeddedTopics,
        deletes: AtomicU64,
    }

    impl TopicBackend for CountingDeletes {
        fn create_topic(
            &self,
            name: &str,
            partitions: u32,
            replicas: u16,
        ) -> sluice_engine::Result<()> {
            self.topics.create_topic(name, partitions, replicas)
        }
        fn delete_topic(&self, name: &str) -> sluice_engine::Result<()> {
            self.deletes.fetch_add(1, Ordering::SeqCst);
            self.topics.delete_topic(name)
        }
        fn describe_topic(&self, name: &str) -> Option<sluice_engine::topic::TopicDescription> {
            self.topics.describe_topic(name)
        }
        fn list_topics(&self) -> Vec<sluice_engine::topic::TopicDescription> {
            self.topics.list_topics()
        }
        fn produce(
            &self,
            topic: &str,
            records: Vec<(
                sluice_engine::topic::Partitioning,
                sluice_engine::topic::Record,
            )>,
        ) -> sluice_engine::Result<Vec<(i32, i64)>> {
            self.topics.produce(topic, records)
        }
        fn consumer(
            &self,
            topic: &str,
        ) -> sluice_engine::Result<Box<dyn sluice_engine::topic::TopicConsumer>> {
            self.topics.consumer(topic)
        }
        fn wait_for_data(&self, timeout: Duration) {
            self.topics.wait_for_data(timeout)
        }
    }

    #[test]
    fn a_dropped_topic_is_deleted_by_the_member_that_was_sent_the_drop_once_the_gate_opens() {
        let counting = Arc::new(CountingDeletes {
            topics: EmbeddedTopics::new(),
            deletes: AtomicU64::new(0),
        });
        let backend: Arc<dyn TopicBackend> = counting.clone();
        let a = member(&backend, "a");
        let b = member(&backend, "b");
        // b's gate: a has applied the command, and the test lets go.
        let held = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (other, hold) = (Arc::downgrade(&a), held.clone());
        b.set_release_gate(Arc::new(move |offset: i64, topics: &[String]| {
            assert_eq!(topics, ["s_topic".to_string()]);
            !hold.load(Ordering::SeqCst)
                && other
                    .upgrade()
                    .and_then(|a| a.last_applied_command())
                    .is_some_and(|applied| applied >= offset)
        }));
        one(
            &a,
            "CREATE STREAM s (k INT KEY, v INT) WITH (kafka_topic='s_topic', value_format='JSON', partitions=1);",
        )
        .expect("create");
        b.await_command(0).expect("b has it");
        let (_, offset) = one(&b, "DROP STREAM s DELETE TOPIC;").expect("drop");
        a.await_command(offset.expect("an offset"))
            .expect("a dropped it");
        assert!(a.source("S").is_none() && b.source("S").is_none());
        assert_eq!(a.last_applied_command(), offset);
        // Not under a member that has not let go of it.
        std::thread::sleep(Duration::from_millis(500));
        assert!(backend.describe_topic("s_topic").is_some());
        held.store(false, Ordering::SeqCst);
        eventually("the topic to be deleted", || {
            backend.describe_topic("s_topic").is_none()
        });
        assert_eq!(counting.deletes.load(Ordering::SeqCst), 1);
        // A member replaying the DROP leaves a new topic of that name be.
        backend.create_topic("s_topic", 1, 1).expect("recreate");
        let c = member(&backend, "c");
        assert!(c.source("S").is_none());
        std::thread::sleep(Duration::from_millis(300));
        assert!(backend.describe_topic("s_topic").is_some());
        assert_eq!(counting.deletes.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_topic_dropped_and_taken_by_a_new_source_before_the_gate_opens_is_kept() {
        let backend: Arc<dyn TopicBackend> = Arc::new(EmbeddedTopics::new());
        let a = member(&backend, "a");
        let held = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let hold = held.clone();
        a.set_release_gate(Arc::new(move |_: i64, _: &[String]| {
            !hold.load(Ordering::SeqCst)
        }));
        one(
            &a,
            "CREATE STREAM s (k INT KEY, v INT) WITH (kafka_topic='s_topic', value_format='JSON', partitions=1);",
        )
        .expect("create");
        one(&a, "DROP STREAM s DELETE TOPIC;").expect("drop");
        one(
            &a,
            "CREATE STREAM t (k INT KEY, v INT) WITH (kafka_topic='s_topic', value_format='JSON');",
        )
        .expect("a new stream over the topic");
        held.store(false, Ordering::SeqCst);
        std::thread::sleep(super::super::GRACE + Duration::from_millis(800));
        assert!(backend.describe_topic("s_topic").is_some());
        assert!(a.source("T").is_some());
    }
}
