//! The key index of a materialized table: its latest row per key, kept as
//! a stack of sorted runs so that publishing a snapshot costs what changed,
//! not the table's size, and a key lookup is a few binary searches.
//!
//! Each pass of the materializer turns the records it read into one
//! [`Run`]: the newest row per key (key columns, then the window bounds of
//! windowed tables), sorted by Arrow's row format, with deletions kept as
//! markers that hide older runs. Runs merge size-tiered (a run merges into
//! the one below it once it is at least half its size), so a table of `n`
//! keys has at most about `log2(n)` runs and each row is rewritten
//! `O(log n)` times over its life. Merging into the bottom run drops the
//! deletion markers; the bottom run then holds only live rows, in key
//! order, and is the whole table when it is alone.
//!
//! Snapshots ([`IndexSnapshot`]) share the runs: publishing one clones a
//! few `Arc`s. The row format encodes columns one after the other, so the
//! encoding of the key columns alone is a byte prefix of the full keys of
//! all windows of that key: a lookup by key is a prefix range per run.

use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use sluice_engine::batch::ChangeBatch;

use crate::error::ServerError;

/// A sorted run of keys and their rows.
#[derive(Debug)]
struct Run {
    /// Full keys, ascending and distinct.
    keys: Rows,
    /// Per key, its row in `batch`, or `None` for a deletion.
    slots: Vec<Option<u32>>,
    /// The live rows, in key order.
    batch: RecordBatch,
}

impl Run {
    fn len(&self) -> usize {
        self.keys.num_rows()
    }

    fn key(&self, i: usize) -> &[u8] {
        self.keys.row(i).data()
    }

    /// The keys that start with `prefix`.
    fn prefix_range(&self, prefix: &[u8]) -> Range<usize> {
        let start = self.partition_point(|k| k < prefix);
        let end = start + self.partition_point_from(start, |k| k.starts_with(prefix));
        start..end
    }

    /// First index whose key fails `before` (which must hold for a prefix
    /// of the keys).
    fn partition_point(&self, before: impl Fn(&[u8]) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if before(self.key(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// How many keys from `start` on satisfy `inside`, a prefix property.
    fn partition_point_from(&self, start: usize, inside: impl Fn(&[u8]) -> bool) -> usize {
        let (mut lo, mut hi) = (start, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if inside(self.key(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo - start
    }

    /// The entry of exactly `key`.
    fn find(&self, key: &[u8]) -> Option<usize> {
        let i = self.partition_point(|k| k < key);
        (i < self.len() && self.key(i) == key).then_some(i)
    }
}

/// Calls `visit(run, entry)` for the newest entry of every distinct key in
/// `ranges` of `runs` (newest run first), in key order. Deletions are
/// visited too: the caller decides what they mean.
fn merge(runs: &[&Run], mut ranges: Vec<Range<usize>>, mut visit: impl FnMut(usize, usize)) {
    loop {
        let mut best: Option<(usize, &[u8])> = None;
        for (r, range) in ranges.iter().enumerate() {
            if range.start < range.end {
                let key = runs[r].key(range.start);
                // Strictly smaller: on a tie the newer run (earlier) wins.
                if best.is_none_or(|(_, b)| key < b) {
                    best = Some((r, key));
                }
            }
        }
        let Some((winner, key)) = best else {
            return;
        };
        visit(winner, ranges[winner].start);
        let key = key.to_vec();
        for (r, range) in ranges.iter_mut().enumerate() {
            if range.start < range.end && runs[r].key(range.start) == key.as_slice() {
                range.start += 1;
            }
        }
    }
}

/// The rows `picks` (run, row in its batch) of `runs`, as one batch.
fn gather(
    schema: &SchemaRef,
    runs: &[&Run],
    picks: &[(usize, usize)],
) -> Result<RecordBatch, ServerError> {
    if picks.is_empty() {
        return Ok(RecordBatch::new_empty(schema.clone()));
    }
    let batches: Vec<&RecordBatch> = runs.iter().map(|r| &r.batch).collect();
    interleave_record_batch(&batches, picks).map_err(internal)
}

fn slot(row: usize) -> Result<Option<u32>, ServerError> {
    u32::try_from(row)
        .map(Some)
        .map_err(|_| ServerError::Internal("a table run exceeds 2^32 rows".into()))
}

/// Encodes key values (one row each) like the index's keys.
#[derive(Debug)]
pub struct KeyEncoder {
    converter: RowConverter,
}

impl KeyEncoder {
    fn new(schema: &SchemaRef, columns: &[usize]) -> Result<Self, ServerError> {
        let fields = columns
            .iter()
            .map(|i| SortField::new(schema.field(*i).data_type().clone()))
            .collect();
        Ok(KeyEncoder {
            converter: RowConverter::new(fields).map_err(internal)?,
        })
    }

    fn encode(&self, columns: &[ArrayRef]) -> Result<Rows, ServerError> {
        self.converter.convert_columns(columns).map_err(internal)
    }
}

/// The latest row per key of one table, updated pass by pass.
pub struct KeyIndex {
    schema: SchemaRef,
    /// Columns that identify a row: keys, then the window bounds.
    identity: Vec<usize>,
    /// How many of `identity` are the table's key columns.
    key_count: usize,
    full: KeyEncoder,
    prefix: Arc<KeyEncoder>,
    /// Oldest (largest) first.
    runs: Vec<Arc<Run>>,
    /// Live rows over all runs.
    live: usize,
    /// Changes read since the last [`Self::flush`].
    pending: Vec<ChangeBatch>,
}

impl KeyIndex {
    /// An empty index of a table whose `key_count` key columns come first
    /// in `schema`; `window` names the window bound columns of windowed
    /// tables.
    pub fn new(
        schema: &SchemaRef,
        key_count: usize,
        window: &[usize],
    ) -> Result<Self, ServerError> {
        let keys: Vec<usize> = (0..key_count).collect();
        let identity: Vec<usize> = keys.iter().chain(window).copied().collect();
        Ok(KeyIndex {
            schema: schema.clone(),
            full: KeyEncoder::new(schema, &identity)?,
            prefix: Arc::new(KeyEncoder::new(schema, &keys)?),
            identity,
            key_count,
            runs: Vec::new(),
            live: 0,
            pending: Vec::new(),
        })
    }

    /// Records `change`; it shows in snapshots after the next flush.
    pub fn apply(&mut self, change: ChangeBatch) {
        if change.num_rows() > 0 {
            self.pending.push(change);
        }
    }

    /// Whether `key` is live in the runs now.
    fn is_live(&self, key: &[u8]) -> bool {
        for run in self.runs.iter().rev() {
            if let Some(i) = run.find(key) {
                return run.slots[i].is_some();
            }
        }
        false
    }

    /// Turns the pending changes into a run and merges runs as needed.
    pub fn flush(&mut self) -> Result<(), ServerError> {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return Ok(());
        }
        let keys: Vec<Rows> = pending
            .iter()
            .map(|c| {
                let columns: Vec<ArrayRef> = self
                    .identity
                    .iter()
                    .map(|i| c.data.column(*i).clone())
                    .collect();
                self.full.encode(&columns)
            })
            .collect::<Result<_, _>>()?;
        // Tables have no row for a null key: such records are skipped.
        let mut entries: Vec<(usize, usize)> = Vec::new();
        for (b, change) in pending.iter().enumerate() {
            for i in 0..change.num_rows() {
                if (0..self.key_count).any(|k| change.data.column(k).is_valid(i)) {
                    entries.push((b, i));
                }
            }
        }
        let key_of = |&(b, i): &(usize, usize)| keys[b].row(i).data();
        // Stable: equal keys stay in arrival order, the last is the newest.
        entries.sort_by(|a, b| key_of(a).cmp(key_of(b)));
        let mut run_keys = self.full.converter.empty_rows(entries.len(), 0);
        let mut slots = Vec::new();
        let mut picks = Vec::new();
        for (n, entry) in entries.iter().enumerate() {
            if entries
                .get(n + 1)
                .is_some_and(|next| key_of(next) == key_of(entry))
            {
                continue;
            }
            let key = key_of(entry);
            let was_live = self.is_live(key);
            if pending[entry.0].is_tombstone(entry.1) {
                if !was_live {
                    // Nothing older to hide.
                    continue;
                }
                self.live -= 1;
                slots.push(None);
            } else {
                if !was_live {
                    self.live += 1;
                }
                slots.push(slot(picks.len())?);
                picks.push(*entry);
            }
            run_keys.push(keys[entry.0].row(entry.1));
        }
        if slots.is_empty() {
            return Ok(());
        }
        let batch = if picks.is_empty() {
            RecordBatch::new_empty(self.schema.clone())
        } else {
            let batches: Vec<&RecordBatch> = pending.iter().map(|c| &c.data).collect();
            interleave_record_batch(&batches, &picks).map_err(internal)?
        };
        self.runs.push(Arc::new(Run {
            keys: run_keys,
            slots,
            batch,
        }));
        while self.runs.len() >= 2 {
            let n = self.runs.len();
            if self.runs[n - 1].len() * 2 < self.runs[n - 2].len() {
                break;
            }
            let newer = self.runs.pop().ok_or_else(|| internal("no run"))?;
            let older = self.runs.pop().ok_or_else(|| internal("no run"))?;
            let merged = self.merge_pair(&newer, &older, self.runs.is_empty())?;
            self.runs.push(Arc::new(merged));
        }
        Ok(())
    }

    fn merge_pair(&self, newer: &Run, older: &Run, bottom: bool) -> Result<Run, ServerError> {
        let runs = [newer, older];
        let mut keys = self.full.converter.empty_rows(newer.len() + older.len(), 0);
        let mut slots = Vec::new();
        let mut picks = Vec::new();
        let mut failed = None;
        merge(&runs, vec![0..newer.len(), 0..older.len()], |r, e| {
            let run = runs[r];
            match run.slots[e] {
                // Below the bottom run nothing is left to hide.
                None if bottom => return,
                None => slots.push(None),
                Some(row) => match slot(picks.len()) {
                    Ok(s) => {
                        slots.push(s);
                        picks.push((r, row as usize));
                    }
                    Err(e) => {
                        failed = Some(e);
                        return;
                    }
                },
            }
            keys.push(run.keys.row(e));
        });
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(Run {
            batch: gather(&self.schema, &runs, &picks)?,
            keys,
            slots,
        })
    }

    /// The index as of the last flush.
    pub fn snapshot(&self) -> IndexSnapshot {
        IndexSnapshot {
            schema: self.schema.clone(),
            prefix: self.prefix.clone(),
            runs: self.runs.clone(),
            live: self.live,
        }
    }
}

/// An immutable view of a [`KeyIndex`].
#[derive(Debug, Clone)]
pub struct IndexSnapshot {
    schema: SchemaRef,
    prefix: Arc<KeyEncoder>,
    /// Oldest first.
    runs: Vec<Arc<Run>>,
    live: usize,
}

impl IndexSnapshot {
    /// Live rows.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn newest_first(&self) -> Vec<&Run> {
        self.runs.iter().rev().map(Arc::as_ref).collect()
    }

    /// Adds the live rows of the keys in `ranges` of `runs` to `picks`,
    /// in key order.
    fn pick(runs: &[&Run], ranges: Vec<Range<usize>>, picks: &mut Vec<(usize, usize)>) {
        merge(runs, ranges, |r, e| {
            if let Some(row) = runs[r].slots[e] {
                picks.push((r, row as usize));
            }
        });
    }

    /// Every live row, in key order.
    pub fn all(&self) -> Result<RecordBatch, ServerError> {
        if let [only] = self.runs.as_slice()
            && only.slots.iter().all(Option::is_some)
        {
            return Ok(only.batch.clone());
        }
        let runs = self.newest_first();
        let ranges = runs.iter().map(|r| 0..r.len()).collect();
        let mut picks = Vec::new();
        Self::pick(&runs, ranges, &mut picks);
        gather(&self.schema, &runs, &picks)
    }

    /// The rows of some keys (every window of each, for windowed tables),
    /// in key order, each key once. `keys` holds one array per key column,
    /// row `i` of each being the `i`th key.
    pub fn lookup(&self, keys: &[ArrayRef]) -> Result<RecordBatch, ServerError> {
        let encoded = self.prefix.encode(keys)?;
        let mut prefixes: Vec<&[u8]> = (0..encoded.num_rows())
            .map(|i| encoded.row(i).data())
            .collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        let runs = self.newest_first();
        let mut picks = Vec::new();
        for prefix in prefixes {
            let ranges = runs.iter().map(|r| r.prefix_range(prefix)).collect();
            Self::pick(&runs, ranges, &mut picks);
        }
        gather(&self.schema, &runs, &picks)
    }
}

fn internal(e: impl std::fmt::Display) -> ServerError {
    ServerError::Internal(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{BooleanArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("K", DataType::Utf8, true),
            Field::new("V", DataType::Int64, true),
        ]))
    }

    fn change(rows: &[(&str, Option<i64>)]) -> ChangeBatch {
        let keys: ArrayRef = Arc::new(StringArray::from(
            rows.iter().map(|(k, _)| Some(*k)).collect::<Vec<_>>(),
        ));
        let values: ArrayRef = Arc::new(Int64Array::from(
            rows.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
        ));
        let tombstones =
            BooleanArray::from(rows.iter().map(|(_, v)| v.is_none()).collect::<Vec<_>>());
        let data = RecordBatch::try_new(schema(), vec![keys, values]).expect("batch");
        ChangeBatch::with_tombstones(data, tombstones)
    }

    fn pairs(batch: &RecordBatch) -> Vec<(String, i64)> {
        let k = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("k");
        let v = batch
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("v");
        (0..batch.num_rows())
            .map(|i| (k.value(i).to_string(), v.value(i)))
            .collect()
    }

    fn key(k: &str) -> Vec<ArrayRef> {
        vec![Arc::new(StringArray::from(vec![k]))]
    }

    #[test]
    fn newest_row_per_key_wins_across_passes_and_deletes_hide_older_runs() {
        let mut index = KeyIndex::new(&schema(), 1, &[]).expect("index");
        let big: Vec<(String, Option<i64>)> =
            (0..100).map(|i| (format!("k{i:03}"), Some(i))).collect();
        let big: Vec<(&str, Option<i64>)> = big.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        index.apply(change(&big));
        index.flush().expect("flush");
        // A small pass stays its own run: deletes must hide the big one.
        index.apply(change(&[
            ("k005", Some(500)),
            ("k007", None),
            ("k005", Some(501)),
        ]));
        index.apply(change(&[("zzz", None), ("new", Some(1))]));
        index.flush().expect("flush");
        let snap = index.snapshot();
        assert_eq!(snap.runs.len(), 2);
        assert_eq!(snap.len(), 100);
        assert_eq!(
            pairs(&snap.lookup(&key("k005")).expect("lookup")),
            vec![("k005".into(), 501)]
        );
        assert!(snap.lookup(&key("k007")).expect("lookup").num_rows() == 0);
        assert!(snap.lookup(&key("zzz")).expect("lookup").num_rows() == 0);
        let all = pairs(&snap.all().expect("all"));
        assert_eq!(all.len(), 100);
        assert_eq!(all[0], ("k000".into(), 0));
        assert_eq!(all[5], ("k005".into(), 501));
        assert_eq!(all[7], ("k008".into(), 8));
        assert_eq!(all[99], ("new".into(), 1));
        // Passes keep merging; the bottom run ends without deletions and
        // is the whole table.
        for i in 0..200 {
            index.apply(change(&[("k001", Some(1000 + i))]));
            index.flush().expect("flush");
        }
        let snap = index.snapshot();
        assert!(snap.runs.len() <= 8, "{} runs", snap.runs.len());
        assert_eq!(
            pairs(&snap.lookup(&key("k001")).expect("lookup")),
            vec![("k001".into(), 1199)]
        );
        assert_eq!(snap.all().expect("all").num_rows(), 100);
        // An older snapshot is not changed by later passes.
        let before = index.snapshot();
        index.apply(change(&[("k001", None)]));
        index.flush().expect("flush");
        assert_eq!(before.lookup(&key("k001")).expect("lookup").num_rows(), 1);
        assert_eq!(
            index
                .snapshot()
                .lookup(&key("k001"))
                .expect("lookup")
                .num_rows(),
            0
        );
        assert_eq!(index.snapshot().len(), 99);
    }

    #[test]
    fn a_key_prefix_finds_every_window_of_the_key() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("K", DataType::Utf8, true),
            Field::new("WS", DataType::Int64, false),
            Field::new("WE", DataType::Int64, false),
        ]));
        let mut index = KeyIndex::new(&schema, 1, &[1, 2]).expect("index");
        let data = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a", "ab", "a", "b", "a"])),
                Arc::new(Int64Array::from(vec![20, 0, 10, 0, 20])),
                Arc::new(Int64Array::from(vec![30, 10, 20, 10, 30])),
            ],
        )
        .expect("batch");
        index.apply(ChangeBatch::new(data));
        index.flush().expect("flush");
        let found = index.snapshot().lookup(&key("a")).expect("lookup");
        let ws = found
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("ws");
        assert_eq!(ws.values().to_vec(), vec![10, 20]);
        assert_eq!(index.snapshot().len(), 4);
        // Several keys at once: in key order, each once.
        let keys: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec!["b", "a", "zz", "b"]))];
        let found = index.snapshot().lookup(&keys).expect("lookup");
        let k = found
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("k");
        assert_eq!(k.iter().flatten().collect::<Vec<_>>(), vec!["a", "a", "b"]);
    }
}
