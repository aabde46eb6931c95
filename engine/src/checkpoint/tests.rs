use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};

use super::*;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sluice-checkpoint-{name}-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn checkpoint(marker: i64) -> QueryCheckpoint {
    let batch = RecordBatch::try_from_iter(vec![
        (
            "n",
            Arc::new(Int64Array::from(vec![marker, marker + 1])) as _,
        ),
        ("s", Arc::new(StringArray::from(vec!["a", "b"])) as _),
    ])
    .expect("batch");
    QueryCheckpoint {
        operators: vec![OperatorSnapshot {
            place: "final.0".into(),
            kind: "GroupAggregate".into(),
            signature: "K Int64".into(),
            parts: vec![batch.clone(), batch.slice(0, 0)],
        }],
        offsets: vec![SourceOffsets {
            topic: "in".into(),
            partitions: vec![(0, marker), (1, marker * 2)],
        }],
        sink: SinkProgress {
            topic: "out".into(),
            records_in: marker as u64,
            records_out: 3,
        },
    }
}

fn numbered_dirs(dir: &Path) -> Vec<u64> {
    let mut found: Vec<u64> = fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    found.sort();
    found
}

#[test]
fn writes_and_restores_the_newest_keeping_two() {
    let root = temp_dir("keep");
    let store = CheckpointStore::open(&root, "CTAS_T_1").expect("open");
    assert!(store.load_latest().expect("load").is_none());
    for marker in 1..=4 {
        store.write(&checkpoint(marker)).expect("write");
    }
    let latest = store.load_latest().expect("load").expect("some");
    assert_eq!(latest.offsets, checkpoint(4).offsets);
    assert_eq!(latest.sink, checkpoint(4).sink);
    assert_eq!(latest.operators[0].parts, checkpoint(4).operators[0].parts);
    assert_eq!(numbered_dirs(store.dir()), vec![3, 4]);
    store.delete().expect("delete");
    assert!(!store.dir().exists());
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn a_damaged_newest_checkpoint_falls_back_to_the_one_before() {
    let root = temp_dir("damaged");
    let store = CheckpointStore::open(&root, "q").expect("open");
    store.write(&checkpoint(10)).expect("write");
    let newest = store.write(&checkpoint(20)).expect("write");
    let file = store.dir().join(newest.to_string()).join("final.0.0.arrow");
    fs::write(&file, b"not arrow").expect("damage");
    let loaded = store.load_latest().expect("load").expect("some");
    assert_eq!(loaded.offsets, checkpoint(10).offsets);
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn an_interrupted_checkpoint_is_ignored_and_cleaned_up() {
    let root = temp_dir("interrupted");
    let store = CheckpointStore::open(&root, "q").expect("open");
    store.write(&checkpoint(1)).expect("write");
    // A crash after writing files of checkpoint 2, before its manifest.
    fs::create_dir_all(store.dir().join("2")).expect("dir");
    fs::write(store.dir().join("2").join("final.0.0.arrow"), b"half").expect("file");
    fs::write(store.dir().join("manifest.json.tmp"), b"{").expect("tmp");
    let loaded = store.load_latest().expect("load").expect("some");
    assert_eq!(loaded.offsets, checkpoint(1).offsets);
    store.write(&checkpoint(3)).expect("write");
    assert_eq!(numbered_dirs(store.dir()), vec![1, 2]);
    let loaded = store.load_latest().expect("load").expect("some");
    assert_eq!(loaded.offsets, checkpoint(3).offsets);
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn a_corrupt_manifest_is_an_error_not_a_fresh_start() {
    let root = temp_dir("corrupt");
    let store = CheckpointStore::open(&root, "q").expect("open");
    fs::write(store.dir().join(MANIFEST), b"{oops").expect("write");
    let err = store.load_latest().expect_err("corrupt");
    assert!(err.to_string().contains("manifest.json"), "{err}");
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn query_ids_become_safe_directory_names() {
    assert_eq!(directory_name("CTAS_X_1"), "CTAS_X_1");
    assert_eq!(directory_name("../a b"), "___a_b");
}
