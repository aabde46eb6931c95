//! Materialized projections: the current rows of every stream and table,
//! as Arrow, for pull queries.
//!
//! A [`Materializer`] is a [`StepObserver`] of the engine's runtime: after
//! each pass over the persistent queries it consumes the topics of all
//! catalog sources through the [`TopicBackend`] and
//! [`source::decode`](sluice_engine::query::source::decode). Tables keep
//! the latest row per key (per key and window when windowed) in a
//! [`KeyIndex`], which pull queries also use for key lookups; tombstones
//! delete. Streams keep their rows in topic order, up to a row limit, the
//! oldest dropped first. Because it runs between passes, it never sees half
//! of a query's output batch; readers take [`Snapshot`]s, which are
//! immutable and published for all sources at once.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::HashMap;
use parking_lot::{Mutex, RwLock};
use sluice_engine::batch::ChangeBatch;
use sluice_engine::operator::OperatorContext;
use sluice_engine::query::SourceSpec;
use sluice_engine::query::source;
use sluice_engine::runtime::StepObserver;
use sluice_engine::topic::TopicConsumer;
use sluice_engine::window::{WINDOWEND, WINDOWSTART};
use sluice_sql::KsqlContext;
use sluice_sql::catalog::DataSource;
use sluice_sql::parser::SourceKind;
use tokio::sync::watch;

use crate::error::ServerError;
use crate::index::{IndexSnapshot, KeyIndex};

/// Rows kept per stream unless configured otherwise.
pub const DEFAULT_STREAM_ROW_LIMIT: usize = 1_000_000;

/// Records decoded into one Arrow batch.
const RECORDS_PER_POLL: usize = 4096;

/// The rows of one source at one point of the engine's progress.
#[derive(Debug)]
pub struct Snapshot {
    pub source: Arc<DataSource>,
    /// Key and value columns, then `ROWTIME`, `ROWPARTITION`, `ROWOFFSET`
    /// and, when windowed, `WINDOWSTART` and `WINDOWEND`.
    pub schema: SchemaRef,
    rows: SnapshotRows,
    /// Set when the source could not be materialized.
    pub error: Option<String>,
}

#[derive(Debug)]
enum SnapshotRows {
    /// A table's index, and its rows as one batch once a query asked.
    Table {
        index: IndexSnapshot,
        all: OnceLock<RecordBatch>,
    },
    Stream(Vec<RecordBatch>),
}

impl Snapshot {
    pub fn num_rows(&self) -> usize {
        match &self.rows {
            SnapshotRows::Table { index, .. } => index.len(),
            SnapshotRows::Stream(batches) => batches.iter().map(RecordBatch::num_rows).sum(),
        }
    }

    /// Every row: a table's in key order (windows in time order), a
    /// stream's in topic order. A table's rows are gathered from its index
    /// on first use and kept with the snapshot.
    pub fn batches(&self) -> Result<Vec<RecordBatch>, ServerError> {
        match &self.rows {
            SnapshotRows::Table { index, all } => {
                if let Some(batch) = all.get() {
                    return Ok(vec![batch.clone()]);
                }
                let batch = index.all()?;
                Ok(vec![all.get_or_init(|| batch).clone()])
            }
            SnapshotRows::Stream(batches) => Ok(batches.clone()),
        }
    }

    /// A table's key index; `None` for streams.
    pub fn index(&self) -> Option<&IndexSnapshot> {
        match &self.rows {
            SnapshotRows::Table { index, .. } => Some(index),
            SnapshotRows::Stream(_) => None,
        }
    }
}

/// Rows of a stream in topic order, the newest `limit` kept.
struct StreamRows {
    batches: VecDeque<RecordBatch>,
    rows: usize,
    limit: usize,
}

impl StreamRows {
    fn apply(&mut self, change: &ChangeBatch) {
        self.rows += change.num_rows();
        self.batches.push_back(change.data.clone());
        while self.rows > self.limit {
            let Some(front) = self.batches.pop_front() else {
                break;
            };
            let excess = self.rows - self.limit;
            if front.num_rows() > excess {
                self.batches
                    .push_front(front.slice(excess, front.num_rows() - excess));
                self.rows -= excess;
            } else {
                self.rows -= front.num_rows();
            }
        }
    }
}

enum Rows {
    Table(KeyIndex),
    Stream(StreamRows),
}

/// One source being materialized.
struct View {
    source: Arc<DataSource>,
    spec: SourceSpec,
    schema: SchemaRef,
    consumer: Box<dyn TopicConsumer>,
    rows: Rows,
    error: Option<String>,
    /// Set after a read: the broker's count of what is left may be short
    /// (see [`View::catch_up`]).
    tail_unsure: bool,
}

impl View {
    fn open(
        ctx: &KsqlContext,
        source: &Arc<DataSource>,
        stream_limit: usize,
    ) -> Result<Self, ServerError> {
        let spec = sluice_sql::context::source_spec(source).map_err(internal)?;
        let schema = spec.schema.batch_schema(spec.window.is_some());
        let consumer = ctx.backend().consumer(&source.topic).map_err(internal)?;
        let rows = match source.kind {
            SourceKind::Table => {
                let mut window = Vec::new();
                if spec.window.is_some() {
                    for name in [WINDOWSTART, WINDOWEND] {
                        window.push(schema.index_of(name).map_err(internal)?);
                    }
                }
                Rows::Table(KeyIndex::new(&schema, spec.schema.key_count(), &window)?)
            }
            SourceKind::Stream => Rows::Stream(StreamRows {
                batches: VecDeque::new(),
                rows: 0,
                limit: stream_limit,
            }),
        };
        Ok(View {
            source: source.clone(),
            spec,
            schema,
            consumer,
            rows,
            error: None,
            tail_unsure: false,
        })
    }

    /// Consumes what the topic has; returns the records read.
    fn catch_up(&mut self, ctx: &KsqlContext) -> Result<usize, ServerError> {
        let log = ctx.runtime().processing_log().clone();
        let query_id = format!("_materialize_{}", self.source.name);
        let op_ctx = OperatorContext {
            query_id: &query_id,
            log: &log,
        };
        // Everything available now, not a budget: the runtime's queries
        // are between passes, so this ends on a whole batch of theirs.
        // (Records produced meanwhile by other threads are single inserts.)
        //
        // A broker may report less than it has: Tansu's high watermark is
        // the last batch's first offset + 1, so the rest of that batch
        // would wait for the next write. After reading, the view reads on
        // until a poll comes back empty, a batch more per pass.
        let mut budget = self.consumer.lag() as usize;
        if budget > 0 || self.tail_unsure {
            budget += RECORDS_PER_POLL;
        }
        let mut consumed = 0;
        while consumed < budget {
            let records = self
                .consumer
                .poll(RECORDS_PER_POLL.min(budget - consumed))
                .map_err(internal)?;
            if records.is_empty() {
                self.tail_unsure = false;
                break;
            }
            self.tail_unsure = true;
            consumed += records.len();
            let change = source::decode(&self.spec, &records, &op_ctx).map_err(internal)?;
            match &mut self.rows {
                Rows::Table(t) => t.apply(change),
                Rows::Stream(s) => s.apply(&change),
            }
        }
        Ok(consumed)
    }

    fn snapshot(&mut self) -> Result<Snapshot, ServerError> {
        let rows = match &mut self.rows {
            Rows::Table(t) => {
                t.flush()?;
                SnapshotRows::Table {
                    index: t.snapshot(),
                    all: OnceLock::new(),
                }
            }
            Rows::Stream(s) => SnapshotRows::Stream(s.batches.iter().cloned().collect()),
        };
        Ok(Snapshot {
            source: self.source.clone(),
            schema: self.schema.clone(),
            rows,
            error: self.error.clone(),
        })
    }
}

/// Keeps every source of a [`KsqlContext`] materialized.
pub struct Materializer {
    ctx: Weak<KsqlContext>,
    stream_row_limit: usize,
    views: Mutex<BTreeMap<String, View>>,
    snapshots: RwLock<HashMap<String, Arc<Snapshot>>>,
    /// Bumped after each publication, for readers waiting on a source.
    published: watch::Sender<u64>,
}

impl Materializer {
    /// A materializer of `ctx`'s sources, registered on its runtime.
    pub fn attach(ctx: &Arc<KsqlContext>, stream_row_limit: usize) -> Arc<Self> {
        let (published, _) = watch::channel(0);
        let m = Arc::new(Materializer {
            ctx: Arc::downgrade(ctx),
            stream_row_limit: stream_row_limit.max(1),
            views: Mutex::new(BTreeMap::new()),
            snapshots: RwLock::new(HashMap::new()),
            published,
        });
        ctx.runtime().observe(m.clone());
        m
    }

    /// Snapshots of `names`, all from the same publication.
    pub fn snapshots(&self, names: &[String]) -> Vec<Option<Arc<Snapshot>>> {
        let snapshots = self.snapshots.read();
        names.iter().map(|n| snapshots.get(n).cloned()).collect()
    }

    /// Like [`Self::snapshots`], but waits up to `timeout` for sources that
    /// exist in the catalog yet have not been materialized (just created).
    pub async fn snapshots_waiting(
        &self,
        names: &[String],
        timeout: Duration,
    ) -> Vec<Option<Arc<Snapshot>>> {
        let mut updates = self.published.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let found = self.snapshots(names);
            if found.iter().all(Option::is_some) {
                return found;
            }
            if tokio::time::timeout_at(deadline, updates.changed())
                .await
                .is_err()
            {
                return found;
            }
        }
    }

    /// Names of the sources materialized now.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.snapshots.read().keys().cloned().collect();
        names.sort();
        names
    }

    fn step(&self, ctx: &KsqlContext) -> usize {
        let sources = ctx.sources();
        let mut views = self.views.lock();
        let before = views.len();
        // Dropped or replaced sources lose their view.
        views.retain(|name, v| {
            sources
                .iter()
                .any(|s| &s.name == name && Arc::ptr_eq(s, &v.source))
        });
        let mut changed: Vec<String> = Vec::new();
        let removed = views.len() != before;
        for s in &sources {
            if views.contains_key(&s.name) {
                continue;
            }
            match View::open(ctx, s, self.stream_row_limit) {
                Ok(view) => {
                    views.insert(s.name.clone(), view);
                    changed.push(s.name.clone());
                }
                Err(e) => tracing::debug!(source = %s.name, "not materialized: {e}"),
            }
        }
        let mut consumed = 0;
        for (name, view) in views.iter_mut() {
            if view.error.is_some() {
                continue;
            }
            match view.catch_up(ctx) {
                Ok(0) => {}
                Ok(n) => {
                    consumed += n;
                    if !changed.contains(name) {
                        changed.push(name.clone());
                    }
                }
                Err(e) => {
                    tracing::error!(source = %name, "materialization failed: {e}");
                    view.error = Some(e.to_string());
                    if !changed.contains(name) {
                        changed.push(name.clone());
                    }
                }
            }
        }
        let mut fresh = Vec::with_capacity(changed.len());
        for name in &changed {
            if let Some(view) = views.get_mut(name) {
                match view.snapshot() {
                    Ok(s) => fresh.push((name.clone(), Arc::new(s))),
                    Err(e) => view.error = Some(e.to_string()),
                }
            }
        }
        if fresh.is_empty() && !removed {
            return consumed;
        }
        {
            let mut snapshots = self.snapshots.write();
            snapshots.retain(|name, _| views.contains_key(name));
            for (name, s) in fresh {
                snapshots.insert(name, s);
            }
        }
        self.published.send_modify(|g| *g += 1);
        consumed
    }
}

impl StepObserver for Materializer {
    fn after_step(&self) -> usize {
        match self.ctx.upgrade() {
            Some(ctx) => self.step(&ctx),
            None => 0,
        }
    }
}

fn internal(e: impl std::fmt::Display) -> ServerError {
    ServerError::Internal(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::ArrayRef;
    use sluice_engine::processing_log::ProcessingLog;
    use sluice_engine::runtime::Runtime;

    fn context() -> Arc<KsqlContext> {
        let backend = Arc::new(sluice_connectors::EmbeddedTopics::new());
        let runtime = Arc::new(Runtime::new(
            backend,
            Arc::new(ProcessingLog::default()),
            16,
        ));
        Arc::new(KsqlContext::new(runtime))
    }

    fn column_i64(s: &Snapshot, name: &str) -> Vec<Option<i64>> {
        let mut out = Vec::new();
        for b in &s.batches().expect("batches") {
            let c = b.column_by_name(name).expect("column");
            let c =
                datafusion::arrow::compute::cast(c, &datafusion::arrow::datatypes::DataType::Int64)
                    .expect("cast");
            let a = c
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                .expect("int64");
            out.extend(a.iter());
        }
        out
    }

    #[test]
    fn tables_keep_the_latest_row_per_key_and_tombstones_delete() {
        let ctx = context();
        let m = Materializer::attach(&ctx, DEFAULT_STREAM_ROW_LIMIT);
        ctx.execute(
            "CREATE TABLE t (k INT PRIMARY KEY, v INT) WITH (kafka_topic='t', value_format='JSON', partitions=2);
             INSERT INTO t (k, v) VALUES (1, 10);
             INSERT INTO t (k, v) VALUES (2, 20);
             INSERT INTO t (k, v) VALUES (1, 11);",
        )
        .expect("statements");
        ctx.runtime().run_until_idle();
        let snap = m.snapshots(&["T".into()]).remove(0).expect("snapshot");
        assert_eq!(column_i64(&snap, "K"), vec![Some(1), Some(2)]);
        assert_eq!(column_i64(&snap, "V"), vec![Some(11), Some(20)]);
        // A tombstone on the key's partition deletes it.
        let key = {
            let codec = snap.source.codec();
            let keys: Vec<ArrayRef> =
                vec![Arc::new(datafusion::arrow::array::Int32Array::from(vec![
                    1,
                ]))];
            codec.encode_key(&keys, 0).expect("key").map(bytes_of)
        };
        ctx.backend()
            .produce(
                "t",
                vec![(
                    sluice_engine::topic::Partitioning::ByKey,
                    sluice_engine::topic::Record {
                        key,
                        value: None,
                        timestamp: 5,
                        headers: vec![],
                    },
                )],
            )
            .expect("produce");
        ctx.runtime().run_until_idle();
        let snap = m.snapshots(&["T".into()]).remove(0).expect("snapshot");
        assert_eq!(column_i64(&snap, "K"), vec![Some(2)]);
    }

    fn bytes_of(v: Vec<u8>) -> bytes::Bytes {
        bytes::Bytes::from(v)
    }

    #[test]
    fn streams_keep_the_newest_rows_up_to_the_limit() {
        let ctx = context();
        let m = Materializer::attach(&ctx, 3);
        ctx.execute("CREATE STREAM s (k INT KEY, v INT) WITH (kafka_topic='s', value_format='JSON', partitions=1);")
            .expect("create");
        for i in 0..5 {
            ctx.execute(&format!("INSERT INTO s (k, v) VALUES ({i}, {i});"))
                .expect("insert");
        }
        ctx.runtime().run_until_idle();
        let snap = m.snapshots(&["S".into()]).remove(0).expect("snapshot");
        assert_eq!(column_i64(&snap, "V"), vec![Some(2), Some(3), Some(4)]);
        // Dropping the source drops its projection.
        ctx.execute("DROP STREAM s;").expect("drop");
        ctx.runtime().run_until_idle();
        assert!(m.snapshots(&["S".into()])[0].is_none());
    }
}
