//! Checkpoints: the durable state of persistent queries.
//!
//! A [`QueryCheckpoint`] is everything a query needs to resume exactly:
//! its operators' state as Arrow batches, the next offset of every source
//! partition, and how far its sink got. [`CheckpointStore`] keeps them
//! under `<state dir>/<query id>/`:
//!
//! - `<n>/<operator>.<part>.arrow`: Arrow IPC files, fsynced, then the
//!   directory `<n>` is fsynced;
//! - `manifest.json`: the last two complete checkpoints (offsets, sink
//!   progress, the files of each operator). It is written to a temporary
//!   file, fsynced and renamed over the old one, then the query directory
//!   is fsynced, so a crash leaves either the old or the new manifest,
//!   never half of one. Checkpoint directories the manifest does not name
//!   (older ones, or one a crash interrupted) are deleted afterwards.
//!
//! Loading takes the newest checkpoint of the manifest whose files read
//! back, falling back to the one before it.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// How many complete checkpoints a query keeps.
const KEEP: usize = 2;
const MANIFEST: &str = "manifest.json";

/// Where checkpoints go and how often they are taken.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    pub dir: PathBuf,
    pub interval: Duration,
}

/// The snapshot of one operator: its place in the plan, its kind (to
/// catch a checkpoint of another plan) and its state.
#[derive(Debug, Clone)]
pub struct OperatorSnapshot {
    /// `input0.1`, `join0`, `join0.2`, `final.0`: where it sits.
    pub place: String,
    /// [`crate::operator::Operator::name`].
    pub kind: String,
    /// The operator's output columns and types: a checkpoint restores only
    /// into an operator that computes the same thing.
    pub signature: String,
    pub parts: Vec<RecordBatch>,
}

/// The next offset to read of each partition of one query input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceOffsets {
    pub topic: String,
    pub partitions: Vec<(i32, i64)>,
}

/// How far a query's output got when the checkpoint was taken: every
/// record up to here was acknowledged by the sink topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkProgress {
    pub topic: String,
    pub records_in: u64,
    pub records_out: u64,
}

/// Everything a query resumes from.
#[derive(Debug, Clone)]
pub struct QueryCheckpoint {
    pub operators: Vec<OperatorSnapshot>,
    /// One per query input, in input order.
    pub offsets: Vec<SourceOffsets>,
    pub sink: SinkProgress,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OperatorEntry {
    place: String,
    kind: String,
    signature: String,
    /// File names inside the checkpoint directory, one per part.
    files: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ManifestEntry {
    number: u64,
    created_ms: u64,
    operators: Vec<OperatorEntry>,
    offsets: Vec<SourceOffsets>,
    sink: SinkProgress,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Manifest {
    query_id: String,
    /// Oldest first.
    checkpoints: Vec<ManifestEntry>,
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> EngineError {
    EngineError::Checkpoint(format!("{what} {}: {e}", path.display()))
}

/// A directory name for a query id: ids are SQL identifiers, which may be
/// quoted and hold anything.
pub(crate) fn directory_name(query_id: &str) -> String {
    query_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Flushes a directory's entries (new files, renames) to disk.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("syncing", dir, e))
}

/// The checkpoints of one query.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    query_id: String,
    dir: PathBuf,
}

impl CheckpointStore {
    /// The store of `query_id` under `state_dir`, created if missing.
    pub fn open(state_dir: &Path, query_id: &str) -> Result<Self> {
        let dir = state_dir.join(directory_name(query_id));
        fs::create_dir_all(&dir).map_err(|e| io_err("creating", &dir, e))?;
        Ok(CheckpointStore {
            query_id: query_id.to_string(),
            dir,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn read_manifest(&self) -> Result<Manifest> {
        let path = self.dir.join(MANIFEST);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Manifest {
                    query_id: self.query_id.clone(),
                    checkpoints: Vec::new(),
                });
            }
            Err(e) => return Err(io_err("opening", &path, e)),
        };
        serde_json::from_reader(BufReader::new(file)).map_err(|e| io_err("reading", &path, e))
    }

    fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let path = self.dir.join(MANIFEST);
        let temporary = self.dir.join(format!("{MANIFEST}.tmp"));
        let bytes =
            serde_json::to_vec_pretty(manifest).map_err(|e| io_err("encoding", &temporary, e))?;
        let mut file = File::create(&temporary).map_err(|e| io_err("creating", &temporary, e))?;
        file.write_all(&bytes)
            .and_then(|_| file.sync_all())
            .map_err(|e| io_err("writing", &temporary, e))?;
        drop(file);
        fs::rename(&temporary, &path).map_err(|e| io_err("renaming", &temporary, e))?;
        sync_dir(&self.dir)
    }

    /// Writes a checkpoint durably and makes it the newest; returns its
    /// number.
    pub fn write(&self, checkpoint: &QueryCheckpoint) -> Result<u64> {
        let mut manifest = self.read_manifest()?;
        let number = manifest
            .checkpoints
            .iter()
            .map(|c| c.number + 1)
            .max()
            .unwrap_or(1);
        let dir = self.dir.join(number.to_string());
        // A crash may have left a directory of this number behind.
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| io_err("clearing", &dir, e))?;
        }
        fs::create_dir_all(&dir).map_err(|e| io_err("creating", &dir, e))?;
        let mut operators = Vec::with_capacity(checkpoint.operators.len());
        for op in &checkpoint.operators {
            let mut files = Vec::with_capacity(op.parts.len());
            for (i, part) in op.parts.iter().enumerate() {
                let name = format!("{}.{i}.arrow", op.place);
                write_batch(&dir.join(&name), part)?;
                files.push(name);
            }
            operators.push(OperatorEntry {
                place: op.place.clone(),
                kind: op.kind.clone(),
                signature: op.signature.clone(),
                files,
            });
        }
        sync_dir(&dir)?;
        let created_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        manifest.checkpoints.push(ManifestEntry {
            number,
            created_ms,
            operators,
            offsets: checkpoint.offsets.clone(),
            sink: checkpoint.sink.clone(),
        });
        let excess = manifest.checkpoints.len().saturating_sub(KEEP);
        manifest.checkpoints.drain(..excess);
        self.write_manifest(&manifest)?;
        self.remove_unlisted(&manifest);
        Ok(number)
    }

    /// Deletes checkpoint directories the manifest does not name. Failing
    /// to delete one only wastes space, so it is logged, not returned.
    fn remove_unlisted(&self, manifest: &Manifest) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(number) = name.to_str().and_then(|n| n.parse::<u64>().ok()) else {
                continue;
            };
            if !manifest.checkpoints.iter().any(|c| c.number == number)
                && let Err(e) = fs::remove_dir_all(entry.path())
            {
                tracing::warn!("removing old checkpoint {}: {e}", entry.path().display());
            }
        }
    }

    /// The number of the newest checkpoint the manifest lists, if any.
    pub fn latest_number(&self) -> Result<Option<u64>> {
        Ok(self.read_manifest()?.checkpoints.last().map(|c| c.number))
    }

    /// The newest checkpoint that reads back completely, if any.
    pub fn load_latest(&self) -> Result<Option<QueryCheckpoint>> {
        let manifest = self.read_manifest()?;
        let mut last_error = None;
        for entry in manifest.checkpoints.iter().rev() {
            match self.load(entry) {
                Ok(checkpoint) => return Ok(Some(checkpoint)),
                Err(e) => {
                    tracing::warn!(
                        query = %self.query_id,
                        "checkpoint {} is unreadable, trying an older one: {e}",
                        entry.number
                    );
                    last_error = Some(e);
                }
            }
        }
        match last_error {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    fn load(&self, entry: &ManifestEntry) -> Result<QueryCheckpoint> {
        let dir = self.dir.join(entry.number.to_string());
        let operators = entry
            .operators
            .iter()
            .map(|op| {
                Ok(OperatorSnapshot {
                    place: op.place.clone(),
                    kind: op.kind.clone(),
                    signature: op.signature.clone(),
                    parts: op
                        .files
                        .iter()
                        .map(|f| read_batch(&dir.join(f)))
                        .collect::<Result<Vec<_>>>()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(QueryCheckpoint {
            operators,
            offsets: entry.offsets.clone(),
            sink: entry.sink.clone(),
        })
    }

    /// Forgets every checkpoint of the query (it was terminated).
    pub fn delete(&self) -> Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("deleting", &self.dir, e)),
        }
    }
}

fn write_batch(path: &Path, batch: &RecordBatch) -> Result<()> {
    let file = File::create(path).map_err(|e| io_err("creating", path, e))?;
    let mut writer = FileWriter::try_new(BufWriter::new(file), &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    let file = writer
        .into_inner()?
        .into_inner()
        .map_err(|e| io_err("writing", path, e.error()))?;
    file.sync_all().map_err(|e| io_err("syncing", path, e))
}

fn read_batch(path: &Path) -> Result<RecordBatch> {
    let file = File::open(path).map_err(|e| io_err("opening", path, e))?;
    let reader = FileReader::try_new(BufReader::new(file), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok(datafusion::arrow::compute::concat_batches(
        &schema, &batches,
    )?)
}

#[cfg(test)]
mod tests;
