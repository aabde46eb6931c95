//! The `plays` stream several cluster tests count: player `p{n}` scores
//! some points in event `i`, keyed by player, and the table of (games,
//! points) per player those events make.

use std::collections::BTreeMap;

use bytes::Bytes;
use sluice_engine::topic::{Partitioning, Record};

/// (player, points) of event `i` among `players` players.
pub fn event(i: u64, players: u64) -> (String, i64) {
    let player = format!("p{}", i.wrapping_mul(7_919) % players);
    let points = ((i.wrapping_mul(2_654_435_761) >> 7) % 100) as i64;
    (player, points)
}

/// Event `i` as a JSON record keyed by its player.
pub fn record(i: u64, players: u64) -> (Partitioning, Record) {
    let (player, points) = event(i, players);
    (
        Partitioning::ByKey,
        Record {
            key: Some(Bytes::from(player)),
            value: Some(Bytes::from(format!(r#"{{"POINTS":{points}}}"#))),
            timestamp: 1_700_000_000_000 + i as i64,
            headers: vec![],
        },
    )
}

/// (games, points) per player after events `0..n`.
pub fn expected(n: u64, players: u64) -> BTreeMap<String, (i64, i64)> {
    let mut totals = BTreeMap::new();
    for i in 0..n {
        let (player, points) = event(i, players);
        let t: &mut (i64, i64) = totals.entry(player).or_default();
        t.0 += 1;
        t.1 += points;
    }
    totals
}
