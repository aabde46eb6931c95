//! [`StreamStreamJoin`]: joins two streams on a key within a time window
//! (`WITHIN (before, after)`), as Kafka Streams' windowed join does.
//!
//! Each side keeps its recent rows by key; a new row joins every row of
//! the other side whose time lies in its window, and the result carries
//! the later of the two times. Rows older than the window plus the grace
//! period (by the side's own stream time) are neither kept nor kept long.
//!
//! Rows that find no partner (LEFT, RIGHT, FULL OUTER) are emitted in one
//! of two ways, as in ksqlDB: without a `GRACE PERIOD` at once, padded
//! with nulls (and possibly followed by joined rows later); with one, only
//! when their window has closed without a match, which avoids those
//! spurious null rows.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::HashMap;
use std::collections::BTreeMap;

use super::join_rows::{
    JoinKind, JoinOutput, JoinSide, KeyBytes, KeyEncoder, RowRef, RowStore, admit, restore_rows,
    side_time,
};
use super::{JoinOperator, OperatorContext, state};
use crate::batch::ChangeBatch;
use crate::error::Result;
use crate::window::DEFAULT_GRACE_MS;

/// The time bounds of a stream-stream join.
#[derive(Debug, Clone, Copy)]
pub struct JoinWindow {
    /// How far a right row may precede a left row.
    pub before_ms: i64,
    /// How far a right row may follow a left row.
    pub after_ms: i64,
    /// Set by `GRACE PERIOD`: unmatched rows wait for their window to close.
    pub grace_ms: Option<i64>,
}

impl JoinWindow {
    fn grace(&self) -> i64 {
        self.grace_ms.unwrap_or(DEFAULT_GRACE_MS)
    }

    fn retention(&self) -> i64 {
        self.before_ms
            .saturating_add(self.after_ms)
            .saturating_add(self.grace())
    }
}

/// One stored row of a side.
#[derive(Clone, Copy)]
struct Entry {
    time: i64,
    seq: u64,
    row: RowRef,
}

/// The rows of one side, by key, expiring by time.
struct SideState {
    store: RowStore,
    by_key: HashMap<KeyBytes, Vec<Entry>>,
    /// (time, seq) -> key, to expire the oldest first.
    by_time: BTreeMap<(i64, u64), KeyBytes>,
    /// The latest time seen on this side.
    stream_time: i64,
}

impl SideState {
    fn new(schema: SchemaRef) -> Self {
        SideState {
            store: RowStore::new(schema),
            by_key: HashMap::new(),
            by_time: BTreeMap::new(),
            stream_time: i64::MIN,
        }
    }

    fn expire(&mut self, retention: i64) {
        let horizon = self.stream_time.saturating_sub(retention);
        while let Some((&(time, seq), _)) = self.by_time.first_key_value() {
            if time >= horizon {
                break;
            }
            let Some((_, key)) = self.by_time.pop_first() else {
                break;
            };
            if let Some(entries) = self.by_key.get_mut(&key) {
                if let Some(i) = entries.iter().position(|e| e.seq == seq) {
                    let e = entries.swap_remove(i);
                    self.store.release(e.row);
                }
                if entries.is_empty() {
                    self.by_key.remove(&key);
                }
            }
            let _ = time;
        }
    }

    /// Rows of `key` with time in `[from, to]`, oldest first.
    fn fetch(&self, key: &KeyBytes, from: i64, to: i64) -> Vec<Entry> {
        let mut found: Vec<Entry> = self
            .by_key
            .get(key)
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e.time >= from && e.time <= to)
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        found.sort_by_key(|e| (e.time, e.seq));
        found
    }
}

/// An unmatched row waiting for its window to close.
struct Pending {
    side: JoinSide,
    row: RowRef,
}

pub struct StreamStreamJoin {
    kind: JoinKind,
    window: JoinWindow,
    encoder: KeyEncoder,
    left: SideState,
    right: SideState,
    /// Unmatched rows of the outer side(s), by (time, seq); only with a
    /// grace period.
    pending: BTreeMap<(i64, u64), Pending>,
    /// The latest time seen on either side.
    stream_time: i64,
    next_seq: u64,
    output: SchemaRef,
    /// Pending rows that left the pending set during this batch; their
    /// reference is given back once the output no longer needs them.
    to_release: Vec<(JoinSide, RowRef)>,
}

impl StreamStreamJoin {
    pub fn new(
        kind: JoinKind,
        window: JoinWindow,
        left_schema: SchemaRef,
        right_schema: SchemaRef,
        output: SchemaRef,
    ) -> Result<Self> {
        let encoder = KeyEncoder::new(left_schema.field(0).data_type())?;
        Ok(StreamStreamJoin {
            kind,
            window,
            encoder,
            left: SideState::new(left_schema),
            right: SideState::new(right_schema),
            pending: BTreeMap::new(),
            stream_time: i64::MIN,
            next_seq: 0,
            output,
            to_release: Vec::new(),
        })
    }

    /// Emits, oldest first, the pending rows whose window has closed.
    fn emit_closed(
        &mut self,
        out: &mut JoinOutput,
        batch: &datafusion::arrow::array::RecordBatch,
        trigger: usize,
    ) {
        let grace = self.window.grace();
        while let Some((&(time, _), pending)) = self.pending.first_key_value() {
            let look_back = match pending.side {
                JoinSide::Left => self.window.after_ms,
                JoinSide::Right => self.window.before_ms,
            };
            if time.saturating_add(look_back).saturating_add(grace) >= self.stream_time {
                break;
            }
            let Some((_, pending)) = self.pending.pop_first() else {
                break;
            };
            self.to_release.push((pending.side, pending.row));
            match pending.side {
                JoinSide::Left => out.push(Some(pending.row), None, time, batch, trigger, false),
                JoinSide::Right => out.push(None, Some(pending.row), time, batch, trigger, false),
            }
        }
    }
}

impl JoinOperator for StreamStreamJoin {
    fn name(&self) -> &'static str {
        "StreamStreamJoin"
    }

    fn output_schema(&self) -> SchemaRef {
        self.output.clone()
    }

    fn state_rows(&self) -> usize {
        self.left.by_time.len() + self.right.by_time.len()
    }

    fn process(
        &mut self,
        side: JoinSide,
        input: ChangeBatch,
        _ctx: &OperatorContext,
    ) -> Result<ChangeBatch> {
        let retention = self.window.retention();
        let (id, keys) = {
            let own = match side {
                JoinSide::Left => &mut self.left,
                JoinSide::Right => &mut self.right,
            };
            admit(&mut own.store, &self.encoder, &input)?
        };
        let mut out = JoinOutput::new();
        let outer_here = self.kind.keeps_unmatched(side);
        for (row, key) in keys.into_iter().enumerate() {
            // Kafka Streams skips records without key or value.
            let Some(key) = key else { continue };
            if input.is_tombstone(row) {
                continue;
            }
            let time = side_time(&input.data, row);
            let seq = self.next_seq;
            self.next_seq += 1;
            let this = RowStore::row(id, row);

            // Keep the row on its side unless it is already too old there.
            {
                let own = match side {
                    JoinSide::Left => &mut self.left,
                    JoinSide::Right => &mut self.right,
                };
                own.stream_time = own.stream_time.max(time);
                if time >= own.stream_time.saturating_sub(retention) {
                    own.store.retain(this);
                    own.by_key.entry(key.clone()).or_default().push(Entry {
                        time,
                        seq,
                        row: this,
                    });
                    own.by_time.insert((time, seq), key.clone());
                }
                own.expire(retention);
            }

            self.stream_time = self.stream_time.max(time);
            if self.window.grace_ms.is_some() && time == self.stream_time {
                self.emit_closed(&mut out, &input.data, row);
            }

            let (from, to) = match side {
                JoinSide::Left => (
                    time.saturating_sub(self.window.before_ms),
                    time.saturating_add(self.window.after_ms),
                ),
                JoinSide::Right => (
                    time.saturating_sub(self.window.after_ms),
                    time.saturating_add(self.window.before_ms),
                ),
            };
            let other = match side {
                JoinSide::Left => &self.right,
                JoinSide::Right => &self.left,
            };
            let matches = other.fetch(&key, from, to);
            for m in &matches {
                let result_time = time.max(m.time);
                match side {
                    JoinSide::Left => out.push(
                        Some(this),
                        Some(m.row),
                        result_time,
                        &input.data,
                        row,
                        false,
                    ),
                    JoinSide::Right => out.push(
                        Some(m.row),
                        Some(this),
                        result_time,
                        &input.data,
                        row,
                        false,
                    ),
                }
                // A partner was found: the other row is no longer waiting.
                if let Some(p) = self.pending.remove(&(m.time, m.seq)) {
                    self.to_release.push((p.side, p.row));
                }
            }
            if matches.is_empty() && outer_here {
                let window_closed = to < self.stream_time;
                if self.window.grace_ms.is_none() || window_closed {
                    match side {
                        JoinSide::Left => out.push(Some(this), None, time, &input.data, row, false),
                        JoinSide::Right => {
                            out.push(None, Some(this), time, &input.data, row, false)
                        }
                    }
                } else {
                    let own = match side {
                        JoinSide::Left => &mut self.left,
                        JoinSide::Right => &mut self.right,
                    };
                    own.store.retain(this);
                    self.pending
                        .insert((time, seq), Pending { side, row: this });
                }
            }
        }
        let result = out.build(&self.left.store, &self.right.store, &self.output)?;
        for (side, row) in std::mem::take(&mut self.to_release) {
            match side {
                JoinSide::Left => self.left.store.release(row),
                JoinSide::Right => self.right.store.release(row),
            }
        }
        match side {
            JoinSide::Left => self.left.store.sweep(id),
            JoinSide::Right => self.right.store.sweep(id),
        }
        Ok(result)
    }

    /// Five parts: per side (left, then right) its rows in the side's
    /// layout and, row for row, `seq`, `stored` (kept for matching) and
    /// `pending` (waiting unmatched); then the stream times and the next
    /// sequence number.
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let mut parts = Vec::with_capacity(5);
        for (side, own) in [(JoinSide::Left, &self.left), (JoinSide::Right, &self.right)] {
            let mut refs = Vec::new();
            let (mut seqs, mut stored, mut pending) = (Vec::new(), Vec::new(), Vec::new());
            for (&(time, seq), key) in &own.by_time {
                let Some(entry) = own
                    .by_key
                    .get(key)
                    .and_then(|entries| entries.iter().find(|e| e.seq == seq))
                else {
                    continue;
                };
                refs.push(entry.row);
                seqs.push(seq as i64);
                stored.push(true);
                pending.push(self.pending.contains_key(&(time, seq)));
            }
            for (&(time, seq), p) in &self.pending {
                if p.side == side && !own.by_time.contains_key(&(time, seq)) {
                    refs.push(p.row);
                    seqs.push(seq as i64);
                    stored.push(false);
                    pending.push(true);
                }
            }
            let n = refs.len();
            parts.push(own.store.snapshot(&refs)?);
            parts.push(state::batch(
                vec![
                    ("seq".into(), Arc::new(Int64Array::from(seqs)) as ArrayRef),
                    ("stored".into(), Arc::new(BooleanArray::from(stored))),
                    ("pending".into(), Arc::new(BooleanArray::from(pending))),
                ],
                n,
            )?);
        }
        parts.push(state::meta(&[
            ("left_time", self.left.stream_time),
            ("right_time", self.right.stream_time),
            ("stream_time", self.stream_time),
            ("next_seq", self.next_seq as i64),
        ])?);
        Ok(parts)
    }

    fn restore(&mut self, parts: Vec<RecordBatch>) -> Result<()> {
        let [left_rows, left_info, right_rows, right_info, meta] =
            state::expect_parts::<5>("StreamStreamJoin", parts)?;
        self.left.stream_time = state::meta_value(&meta, "left_time")?;
        self.right.stream_time = state::meta_value(&meta, "right_time")?;
        self.stream_time = state::meta_value(&meta, "stream_time")?;
        self.next_seq = u64::try_from(state::meta_value(&meta, "next_seq")?).unwrap_or(0);
        for (side, rows, info) in [
            (JoinSide::Left, left_rows, left_info),
            (JoinSide::Right, right_rows, right_info),
        ] {
            let own = match side {
                JoinSide::Left => &mut self.left,
                JoinSide::Right => &mut self.right,
            };
            let times: Vec<i64> = (0..rows.num_rows()).map(|r| side_time(&rows, r)).collect();
            let seqs = state::i64s(&info, "seq")?;
            let stored = state::bools(&info, "stored")?;
            let pending = state::bools(&info, "pending")?;
            if seqs.len() != rows.num_rows() {
                return Err(crate::error::EngineError::Checkpoint(
                    "StreamStreamJoin state: rows and their details differ in length".into(),
                ));
            }
            let restored = restore_rows(&mut own.store, &self.encoder, rows)?;
            for (i, (row, key)) in restored.into_iter().enumerate() {
                let (time, seq) = (times[i], u64::try_from(seqs.value(i)).unwrap_or(0));
                // restore_rows retained each row once; every holder below
                // takes its own reference, then that first one is returned.
                if stored.value(i)
                    && let Some(key) = key
                {
                    own.store.retain(row);
                    own.by_key
                        .entry(key.clone())
                        .or_default()
                        .push(Entry { time, seq, row });
                    own.by_time.insert((time, seq), key);
                }
                if pending.value(i) {
                    own.store.retain(row);
                    self.pending.insert((time, seq), Pending { side, row });
                }
                own.store.release(row);
            }
        }
        Ok(())
    }
}
