//! Persistent queries: source topics, chains of operators, a sink topic.
//!
//! [`QueryPlan`] is what the SQL layer builds; [`PersistentQuery`] runs it:
//! each [`PersistentQuery::poll_once`] reads what its sources have, decodes
//! it ([`source`]), runs it through its input's operators, the joins (if
//! any, see [`JoinStage`]) and the final operators, and writes the results
//! ([`sink`]).

pub mod distributed;
pub mod sink;
pub mod source;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::batch::ChangeBatch;
use crate::checkpoint::{
    CheckpointStore, OperatorSnapshot, QueryCheckpoint, SinkProgress, SourceOffsets,
};
use crate::error::{EngineError, Result};
use crate::format::RecordCodec;
use crate::operator::join_rows::JoinSide;
use crate::operator::{JoinOperator, Operator, OperatorContext};
use crate::processing_log::ProcessingLog;
use crate::schema::LogicalSchema;
use crate::topic::{ProduceWriter, TopicBackend, TopicConsumer, TopicWriter};
use crate::window::WindowType;

/// Where a record's event time comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampSource {
    /// The record's own timestamp.
    RecordTime,
    /// A BIGINT or TIMESTAMP column, by position in the row.
    Column(usize),
    /// A STRING column read by a `TIMESTAMP_FORMAT` pattern.
    Parsed(usize, TimestampParser),
}

impl TimestampSource {
    /// The event time of a row from its value in the timestamp column:
    /// `None` when it has none (null, negative or unparseable).
    pub fn time_of(&self, value: &datafusion::common::ScalarValue) -> Option<i64> {
        use datafusion::common::ScalarValue;
        let time = match (self, value) {
            (
                TimestampSource::Column(_),
                ScalarValue::Int64(Some(v)) | ScalarValue::TimestampMillisecond(Some(v), _),
            ) => Some(*v),
            (TimestampSource::Parsed(_, parser), ScalarValue::Utf8(Some(text))) => (parser.0)(text),
            _ => None,
        };
        time.filter(|t| *t >= 0)
    }

    /// The row position of the timestamp column, if it has one.
    pub fn column(&self) -> Option<usize> {
        match self {
            TimestampSource::RecordTime => None,
            TimestampSource::Column(i) | TimestampSource::Parsed(i, _) => Some(*i),
        }
    }
}

/// A function from text to epoch millis, `None` when unreadable.
pub type ParseTime = dyn Fn(&str) -> Option<i64> + Send + Sync;

/// Reads an event time (epoch millis) from text, for `TIMESTAMP_FORMAT`.
#[derive(Clone)]
pub struct TimestampParser(pub Arc<ParseTime>);

impl std::fmt::Debug for TimestampParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TimestampParser")
    }
}

impl PartialEq for TimestampParser {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TimestampParser {}

/// The source side of a query.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub topic: String,
    pub schema: LogicalSchema,
    pub codec: RecordCodec,
    /// Tables treat a record without value as the deletion of its key;
    /// streams carry it along as a row without value.
    pub is_table: bool,
    pub timestamp: TimestampSource,
    /// Set for windowed sources: keys carry their window.
    pub window: Option<WindowType>,
    /// The topic is a repartition topic ([`sink::RepartitionSink`]): each
    /// record's headers carry the key, partition and offset of the source
    /// record it was made from, which become the row's key, `ROWPARTITION`
    /// and `ROWOFFSET`.
    pub repartitioned: bool,
}

/// The sink side of a query: the operators' output schema must be the
/// sink schema's Arrow form.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    pub topic: String,
    pub schema: LogicalSchema,
    pub codec: RecordCodec,
    /// Set for windowed results: keys are written with their window.
    pub window: Option<WindowType>,
    /// Where written records take their timestamp: the row time, or a
    /// column of the output (`WITH (TIMESTAMP=...)`), by position in the
    /// output batch (keys, then values).
    pub timestamp: TimestampSource,
    /// The query computed the key (PARTITION BY, joins) rather than
    /// passing a record's key on: all-null keys are still written.
    pub computed_key: bool,
    /// Set for the first stage of a repartitioned aggregate: every record
    /// also carries its source record's key, partition and offset.
    pub repartition: Option<sink::RepartitionSink>,
}

/// One input of a query: a source topic and the operators that prepare
/// its rows (for a join: the side's key and layout).
pub struct QueryInput {
    pub source: SourceSpec,
    pub operators: Vec<Box<dyn Operator>>,
}

/// One join of a query. Joins chain left-deep: stage `k` joins the result
/// of stage `k - 1` (or input 0) with input `k + 1`.
pub struct JoinStage {
    pub join: Box<dyn JoinOperator>,
    /// Prepare the join's result for the next stage (its join key).
    pub operators: Vec<Box<dyn Operator>>,
}

/// A planned query, ready to run.
pub struct QueryPlan {
    pub id: String,
    pub inputs: Vec<QueryInput>,
    /// Empty, or one fewer than `inputs`.
    pub joins: Vec<JoinStage>,
    /// After the last join (or the single input): to the sink.
    pub operators: Vec<Box<dyn Operator>>,
    pub sink: SinkSpec,
}

impl QueryPlan {
    /// A query over one source.
    pub fn single(
        id: String,
        source: SourceSpec,
        operators: Vec<Box<dyn Operator>>,
        sink: SinkSpec,
    ) -> Self {
        QueryPlan {
            id,
            inputs: vec![QueryInput {
                source,
                operators: vec![],
            }],
            joins: vec![],
            operators,
            sink,
        }
    }

    pub fn sources(&self) -> impl Iterator<Item = &SourceSpec> {
        self.inputs.iter().map(|i| &i.source)
    }
}

/// Counters of a running query.
#[derive(Debug, Default)]
pub struct QueryStats {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
}

/// Whether a query is healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryState {
    Running,
    /// The query hit an error that is not a single bad record; it stops.
    Error(String),
}

/// A query attached to its topics.
pub struct PersistentQuery {
    plan: QueryPlan,
    /// One per input, in input order.
    consumers: Vec<Box<dyn TopicConsumer>>,
    /// Appends to the sink topic; what it holds in flight is flushed
    /// before a checkpoint.
    writer: Box<dyn TopicWriter>,
    log: Arc<ProcessingLog>,
    stats: Arc<QueryStats>,
    state: QueryState,
    checkpoints: Option<Checkpointing>,
}

/// A query's checkpoint schedule.
struct Checkpointing {
    store: CheckpointStore,
    interval: std::time::Duration,
    last: std::time::Instant,
}

impl PersistentQuery {
    /// Opens the source topics from their beginning.
    pub fn start(
        plan: QueryPlan,
        backend: Arc<dyn TopicBackend>,
        log: Arc<ProcessingLog>,
    ) -> Result<Self> {
        Self::start_on(plan, backend, log, None)
    }

    /// Opens only `partitions` of every source topic (all when `None`),
    /// from their beginning: one instance of a query shared by a cluster.
    pub fn start_on(
        plan: QueryPlan,
        backend: Arc<dyn TopicBackend>,
        log: Arc<ProcessingLog>,
        partitions: Option<&[i32]>,
    ) -> Result<Self> {
        if !plan.joins.is_empty() && plan.joins.len() + 1 != plan.inputs.len() {
            return Err(crate::error::EngineError::Plan(format!(
                "a query with {} joins needs {} inputs, not {}",
                plan.joins.len(),
                plan.joins.len() + 1,
                plan.inputs.len()
            )));
        }
        let consumers = plan
            .inputs
            .iter()
            .map(|i| match partitions {
                None => backend.consumer(&i.source.topic),
                Some(only) => backend.partition_consumer(&i.source.topic, only),
            })
            .collect::<Result<Vec<_>>>()?;
        let writer = match backend.writer(&plan.sink.topic)? {
            Some(writer) => writer,
            None => Box::new(ProduceWriter::new(backend, plan.sink.topic.clone())),
        };
        Ok(PersistentQuery {
            plan,
            consumers,
            writer,
            log,
            stats: Arc::new(QueryStats::default()),
            state: QueryState::Running,
            checkpoints: None,
        })
    }

    /// Makes the query durable: restores the newest checkpoint in `store`
    /// (if any) and checkpoints there every `interval` from now on.
    /// Returns whether a checkpoint was restored.
    pub fn enable_checkpoints(
        &mut self,
        store: CheckpointStore,
        interval: std::time::Duration,
    ) -> Result<bool> {
        let restored = match store.load_latest()? {
            Some(checkpoint) => {
                self.restore(checkpoint)?;
                true
            }
            None => false,
        };
        self.checkpoints = Some(Checkpointing {
            store,
            interval,
            last: std::time::Instant::now(),
        });
        Ok(restored)
    }

    /// Where the query's checkpoints go, if it is durable.
    pub fn checkpoint_store(&self) -> Option<&CheckpointStore> {
        self.checkpoints.as_ref().map(|c| &c.store)
    }

    /// Whether a durable, healthy query is due for a checkpoint.
    pub fn checkpoint_due(&self) -> bool {
        self.state == QueryState::Running
            && self
                .checkpoints
                .as_ref()
                .is_some_and(|c| c.last.elapsed() >= c.interval)
    }

    /// Waits until everything the query wrote is in its sink topic. A
    /// record that cannot be delivered stops the query: its output would
    /// have a hole.
    pub fn flush(&mut self) -> Result<()> {
        if self.state != QueryState::Running {
            return Ok(());
        }
        self.writer.flush().inspect_err(|e| {
            tracing::error!(query = %self.plan.id, "query failed: {e}");
            self.state = QueryState::Error(e.to_string());
        })
    }

    /// Writes a checkpoint now (a durable query that is running); returns
    /// its number. Called between polls, when every record consumed has
    /// gone through the operators; the sink is flushed first, so the
    /// offsets saved never run ahead of the output delivered: state,
    /// offsets and output agree.
    pub fn write_checkpoint(&mut self) -> Result<Option<u64>> {
        if self.state != QueryState::Running || self.checkpoints.is_none() {
            return Ok(None);
        }
        // A failed attempt waits for the next interval too, rather than
        // being retried (and logged) on every poll.
        if let Some(c) = &mut self.checkpoints {
            c.last = std::time::Instant::now();
        }
        self.flush()?;
        let checkpoint = self.checkpoint()?;
        let Some(c) = &self.checkpoints else {
            return Ok(None);
        };
        Ok(Some(c.store.write(&checkpoint)?))
    }

    /// Every operator of the plan with its place: `input{i}.{j}`,
    /// `join{k}`, `join{k}.{j}`, `final.{j}`.
    fn places(&mut self) -> Vec<(String, Place<'_>)> {
        let mut all: Vec<(String, Place<'_>)> = Vec::new();
        for (i, input) in self.plan.inputs.iter_mut().enumerate() {
            for (j, op) in input.operators.iter_mut().enumerate() {
                all.push((format!("input{i}.{j}"), Place::Operator(op.as_mut())));
            }
        }
        for (k, stage) in self.plan.joins.iter_mut().enumerate() {
            all.push((format!("join{k}"), Place::Join(stage.join.as_mut())));
            for (j, op) in stage.operators.iter_mut().enumerate() {
                all.push((format!("join{k}.{j}"), Place::Operator(op.as_mut())));
            }
        }
        for (j, op) in self.plan.operators.iter_mut().enumerate() {
            all.push((format!("final.{j}"), Place::Operator(op.as_mut())));
        }
        all
    }

    /// The query's state now: operators, source positions, sink progress.
    pub fn checkpoint(&mut self) -> Result<QueryCheckpoint> {
        let mut operators = Vec::new();
        for (place, op) in self.places() {
            let signature = op.signature();
            let (kind, parts) = match op {
                Place::Operator(op) => (op.name(), op.snapshot()?),
                Place::Join(join) => (join.name(), join.snapshot()?),
            };
            operators.push(OperatorSnapshot {
                place,
                kind: kind.to_string(),
                signature,
                parts,
            });
        }
        let offsets = self
            .plan
            .inputs
            .iter()
            .zip(&self.consumers)
            .map(|(input, consumer)| SourceOffsets {
                topic: input.source.topic.clone(),
                partitions: consumer.positions(),
            })
            .collect();
        Ok(QueryCheckpoint {
            operators,
            offsets,
            sink: SinkProgress {
                topic: self.plan.sink.topic.clone(),
                records_in: self.stats.records_in.load(Ordering::Relaxed),
                records_out: self.stats.records_out.load(Ordering::Relaxed),
            },
        })
    }

    /// Resumes from `checkpoint`: operator state, then source positions.
    /// Fails, changing nothing that matters (the query is not running
    /// yet), when the checkpoint was taken of a different plan.
    pub fn restore(&mut self, checkpoint: QueryCheckpoint) -> Result<()> {
        let id = self.plan.id.clone();
        if checkpoint.offsets.len() != self.consumers.len() {
            return Err(EngineError::Checkpoint(format!(
                "query {id}: the checkpoint has {} inputs, the query {}",
                checkpoint.offsets.len(),
                self.consumers.len()
            )));
        }
        for (input, offsets) in self.plan.inputs.iter().zip(&checkpoint.offsets) {
            if input.source.topic != offsets.topic {
                return Err(EngineError::Checkpoint(format!(
                    "query {id}: the checkpoint reads topic '{}' where the query reads '{}'",
                    offsets.topic, input.source.topic
                )));
            }
        }
        let mut snapshots = checkpoint.operators.into_iter();
        for (place, op) in self.places() {
            let Some(snapshot) = snapshots.next() else {
                return Err(EngineError::Checkpoint(format!(
                    "query {id}: the checkpoint lacks operator {place}"
                )));
            };
            let kind = match &op {
                Place::Operator(op) => op.name(),
                Place::Join(join) => join.name(),
            };
            if snapshot.place != place || snapshot.kind != kind {
                return Err(EngineError::Checkpoint(format!(
                    "query {id}: the checkpoint has {} {} where the query has {kind} {place}",
                    snapshot.kind, snapshot.place
                )));
            }
            let signature = op.signature();
            if snapshot.signature != signature {
                return Err(EngineError::Checkpoint(format!(
                    "query {id}: {kind} {place} of the checkpoint computes ({}), the query's computes ({signature}): the query changed since",
                    snapshot.signature
                )));
            }
            let restored = match op {
                Place::Operator(op) => op.restore(snapshot.parts),
                Place::Join(join) => join.restore(snapshot.parts),
            };
            restored.map_err(|e| {
                EngineError::Checkpoint(format!("query {id}: restoring {kind} {place}: {e}"))
            })?;
        }
        if let Some(extra) = snapshots.next() {
            return Err(EngineError::Checkpoint(format!(
                "query {id}: the checkpoint has operator {} the query lacks",
                extra.place
            )));
        }
        for (consumer, offsets) in self.consumers.iter_mut().zip(&checkpoint.offsets) {
            for (partition, offset) in &offsets.partitions {
                consumer.seek(*partition, *offset)?;
            }
        }
        self.stats
            .records_in
            .store(checkpoint.sink.records_in, Ordering::Relaxed);
        self.stats
            .records_out
            .store(checkpoint.sink.records_out, Ordering::Relaxed);
        Ok(())
    }

    pub fn id(&self) -> &str {
        &self.plan.id
    }

    /// Skips what the source topics hold now, so the query sees only
    /// records produced from here on (`auto.offset.reset=latest`).
    pub fn skip_to_end(&mut self) -> Result<()> {
        for consumer in &mut self.consumers {
            while !consumer.poll(4096)?.is_empty() {}
        }
        Ok(())
    }

    pub fn plan(&self) -> &QueryPlan {
        &self.plan
    }

    pub fn stats(&self) -> Arc<QueryStats> {
        self.stats.clone()
    }

    pub fn state(&self) -> &QueryState {
        &self.state
    }

    /// Records of the source topics not read yet, over every input, as of
    /// the consumers' latest fetches (metrics read it, often, and must
    /// not wait on the broker while holding the runtime).
    pub fn lag(&self) -> u64 {
        self.consumers.iter().map(|c| c.recent_lag()).sum()
    }

    /// Records dropped by windowed operators for arriving too late.
    pub fn late_records(&self) -> u64 {
        let ops = self
            .plan
            .inputs
            .iter()
            .flat_map(|i| i.operators.iter())
            .chain(self.plan.joins.iter().flat_map(|j| j.operators.iter()))
            .chain(self.plan.operators.iter());
        ops.map(|op| op.late_records()).sum()
    }

    /// Rows of operator state the query holds.
    pub fn state_rows(&self) -> usize {
        let ops = self
            .plan
            .inputs
            .iter()
            .flat_map(|i| i.operators.iter())
            .chain(self.plan.joins.iter().flat_map(|j| j.operators.iter()))
            .chain(self.plan.operators.iter());
        ops.map(|op| op.state_rows()).sum::<usize>()
            + self
                .plan
                .joins
                .iter()
                .map(|j| j.join.state_rows())
                .sum::<usize>()
    }

    /// Processes up to `max_records` available records of each input;
    /// returns how many were consumed (0 when caught up or stopped by an
    /// error).
    pub fn poll_once(&mut self, max_records: usize) -> usize {
        if self.state != QueryState::Running {
            return 0;
        }
        match self.try_poll(max_records) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(query = %self.plan.id, "query failed: {e}");
                self.state = QueryState::Error(e.to_string());
                0
            }
        }
    }

    /// Lets each operator after the joins emit what it held back, through
    /// the operators after it, to the sink.
    fn flush_operators(&mut self) -> Result<()> {
        let ctx = OperatorContext {
            query_id: &self.plan.id,
            log: &self.log,
        };
        for i in 0..self.plan.operators.len() {
            if let Some(batch) = self.plan.operators[i].flush(&ctx)? {
                finish(
                    &mut self.plan.operators[i + 1..],
                    batch,
                    &self.plan.sink,
                    self.writer.as_mut(),
                    &self.stats,
                    &ctx,
                )?;
            }
        }
        Ok(())
    }

    fn try_poll(&mut self, max_records: usize) -> Result<usize> {
        let mut consumed = 0;
        for input in 0..self.consumers.len() {
            consumed += self.poll_input(input, max_records)?;
        }
        if consumed == 0 {
            self.flush_operators()?;
            // Caught up: what is in flight is delivered now rather than
            // at the next checkpoint, and a failed delivery shows.
            self.writer.flush()?;
        }
        Ok(consumed)
    }

    fn poll_input(&mut self, input: usize, max_records: usize) -> Result<usize> {
        let records = self.consumers[input].poll(max_records)?;
        if records.is_empty() {
            return Ok(0);
        }
        let consumed = records.len();
        self.stats
            .records_in
            .fetch_add(consumed as u64, Ordering::Relaxed);
        let plan = &mut self.plan;
        let ctx = OperatorContext {
            query_id: &plan.id,
            log: &self.log,
        };
        let source = &mut plan.inputs[input];
        let mut batch: ChangeBatch = source::decode(&source.source, &records, &ctx)?;
        batch = run(&mut source.operators, batch, &ctx)?;
        if !plan.joins.is_empty() {
            // Input 0 is the left side of the first join; input k the
            // right side of join k - 1. Results flow on as left sides.
            let (first, mut side) = match input {
                0 => (0, JoinSide::Left),
                k => (k - 1, JoinSide::Right),
            };
            for stage in &mut plan.joins[first..] {
                if batch.num_rows() == 0 {
                    return Ok(consumed);
                }
                batch = stage.join.process(side, batch, &ctx)?;
                batch = run(&mut stage.operators, batch, &ctx)?;
                side = JoinSide::Left;
            }
        }
        finish(
            &mut plan.operators,
            batch,
            &plan.sink,
            self.writer.as_mut(),
            &self.stats,
            &ctx,
        )?;
        Ok(consumed)
    }
}

/// An operator of a plan, for checkpointing.
enum Place<'a> {
    Operator(&'a mut dyn Operator),
    Join(&'a mut dyn JoinOperator),
}

impl Place<'_> {
    /// The output columns and their types, `NAME Type, ...`.
    fn signature(&self) -> String {
        let schema = match self {
            Place::Operator(op) => op.output_schema(),
            Place::Join(join) => join.output_schema(),
        };
        schema
            .fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Runs `batch` through `operators`.
fn run(
    operators: &mut [Box<dyn Operator>],
    mut batch: ChangeBatch,
    ctx: &OperatorContext,
) -> Result<ChangeBatch> {
    for op in operators {
        if batch.num_rows() == 0 {
            break;
        }
        batch = op.process(batch, ctx)?;
    }
    Ok(batch)
}

/// Runs `batch` through `operators` and writes what comes out to the sink.
fn finish(
    operators: &mut [Box<dyn Operator>],
    mut batch: ChangeBatch,
    sink: &SinkSpec,
    writer: &mut dyn TopicWriter,
    stats: &QueryStats,
    ctx: &OperatorContext,
) -> Result<()> {
    for op in operators {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        batch = op.process(batch, ctx)?;
    }
    if batch.num_rows() > 0 {
        let written = sink::write(sink, &batch, writer, ctx)?;
        stats
            .records_out
            .fetch_add(written as u64, Ordering::Relaxed);
    }
    Ok(())
}
