//! The scenarios of `sluice bench`: each is ksqlDB SQL over one or more
//! input topics of JSON events, with the events it is fed. The Nexmark
//! scenarios live in `nexmark.rs`.

use bytes::Bytes;
use sluice_engine::schema::{Column, LogicalSchema, SqlType};
use sluice_engine::topic::Record;

/// Distinct keys of the aggregating scenarios.
pub const KEYS: usize = 10_000;
/// Rows of the stream-table join's table.
pub const TABLE_ROWS: usize = 100_000;

/// A topic filled before the clock starts, and its records.
pub type Preload = (&'static str, fn() -> Vec<Record>);

/// A topic the scenario's events are written to.
pub struct Input {
    pub topic: &'static str,
    /// Its columns, for the decode limit.
    pub schema: fn() -> LogicalSchema,
}

/// Event `i` of a run with event time `timestamp`, and the index of the
/// input (in [`Scenario::inputs`]) it is written to. Stateful, so a
/// generator can carry on from the previous event; `i` counts up from 0.
pub type Events = Box<dyn FnMut(usize, i64) -> (usize, Record)>;

pub struct Scenario {
    pub name: &'static str,
    pub description: &'static str,
    /// Statements creating the inputs and the query.
    pub sql: &'static str,
    pub inputs: &'static [Input],
    /// Where the results are read (the last query's sink).
    pub output_topic: &'static str,
    /// A fresh source of the scenario's events.
    pub events: fn() -> Events,
    /// Records written before the clock starts (a table to join).
    pub preload: Option<Preload>,
}

impl Scenario {
    /// The `count` first events with event times from `timestamp`, one
    /// list per input.
    pub fn generate(&self, count: usize, timestamp: impl Fn(usize) -> i64) -> Vec<Vec<Record>> {
        let mut events = (self.events)();
        let mut per_input = vec![Vec::new(); self.inputs.len()];
        for i in 0..count {
            let (input, record) = events(i, timestamp(i));
            per_input[input].push(record);
        }
        per_input
    }
}

const BIDS: &[Input] = &[Input {
    topic: "bids",
    schema: bids_schema,
}];
const KEYED: &[Input] = &[Input {
    topic: "events",
    schema: keyed_schema,
}];
const MOVES: &[Input] = &[Input {
    topic: "moves",
    schema: moves_schema,
}];

/// The scenarios of `--scenario all`, then the Nexmark ones.
pub fn all() -> impl Iterator<Item = &'static Scenario> {
    SCENARIOS.iter().chain(super::nexmark::SCENARIOS)
}

pub fn find(name: &str) -> Option<&'static Scenario> {
    all().find(|s| s.name == name)
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "stateless",
        description: "filter + projection, JSON in and out",
        sql: "CREATE STREAM bids (auction BIGINT KEY, bidder BIGINT, price BIGINT, channel STRING, url STRING)
                WITH (kafka_topic='bids', value_format='JSON', partitions=1);
              CREATE STREAM expensive_bids AS
                SELECT auction, bidder, price * 100 AS price_cents, UCASE(channel) AS channel
                FROM bids WHERE price > 50;",
        inputs: BIDS,
        output_topic: "EXPENSIVE_BIDS",
        events: || Box::new(|i, t| (0, bid(i, t))),
        preload: None,
    },
    Scenario {
        name: "tumbling",
        description: "10,000-key COUNT/SUM/AVG, 1-minute tumbling windows",
        sql: "CREATE STREAM events (k STRING KEY, v BIGINT, match STRING)
                WITH (kafka_topic='events', value_format='JSON', partitions=1);
              CREATE TABLE per_minute AS SELECT k, COUNT(*) AS c, SUM(v) AS s, AVG(v) AS a FROM events
                WINDOW TUMBLING (SIZE 1 MINUTE, RETENTION 10 MINUTES, GRACE PERIOD 1 MINUTE) GROUP BY k;",
        inputs: KEYED,
        output_topic: "PER_MINUTE",
        events: || Box::new(|i, t| (0, keyed(i, t))),
        preload: None,
    },
    Scenario {
        name: "hopping",
        description: "10,000-key COUNT/SUM, 1-minute windows advancing by 20 seconds",
        sql: "CREATE STREAM events (k STRING KEY, v BIGINT, match STRING)
                WITH (kafka_topic='events', value_format='JSON', partitions=1);
              CREATE TABLE hopping AS SELECT k, COUNT(*) AS c, SUM(v) AS s FROM events
                WINDOW HOPPING (SIZE 1 MINUTE, ADVANCE BY 20 SECONDS, GRACE PERIOD 1 MINUTE) GROUP BY k;",
        inputs: KEYED,
        output_topic: "HOPPING",
        events: || Box::new(|i, t| (0, keyed(i, t))),
        preload: None,
    },
    Scenario {
        name: "session",
        description: "10,000-key COUNT/SUM, 30-second session windows",
        sql: "CREATE STREAM events (k STRING KEY, v BIGINT, match STRING)
                WITH (kafka_topic='events', value_format='JSON', partitions=1);
              CREATE TABLE sessions AS SELECT k, COUNT(*) AS c, SUM(v) AS s FROM events
                WINDOW SESSION (30 SECONDS, GRACE PERIOD 1 MINUTE) GROUP BY k;",
        inputs: KEYED,
        output_topic: "SESSIONS",
        events: || Box::new(|i, t| (0, keyed(i, t))),
        preload: None,
    },
    Scenario {
        name: "stream-table-join",
        description: "events enriched from a 100,000-row table (LEFT JOIN on the key)",
        sql: "CREATE TABLE players (id STRING PRIMARY KEY, name STRING, country STRING)
                WITH (kafka_topic='players', value_format='JSON', partitions=1);
              CREATE STREAM moves (player STRING KEY, x BIGINT, y BIGINT)
                WITH (kafka_topic='moves', value_format='JSON', partitions=1);
              CREATE STREAM enriched AS
                SELECT m.player AS player, m.x, m.y, p.name, p.country
                FROM moves m LEFT JOIN players p ON m.player = p.id;",
        inputs: MOVES,
        output_topic: "ENRICHED",
        events: || Box::new(|i, t| (0, moves(i, t))),
        preload: Some(("players", players)),
    },
];

fn record(key: String, value: String, timestamp: i64) -> Record {
    Record {
        key: Some(Bytes::from(key)),
        value: Some(Bytes::from(value)),
        timestamp,
        headers: Vec::new(),
    }
}

fn bids_schema() -> LogicalSchema {
    LogicalSchema::new(vec![
        Column::key("AUCTION", SqlType::Bigint),
        Column::value("BIDDER", SqlType::Bigint),
        Column::value("PRICE", SqlType::Bigint),
        Column::value("CHANNEL", SqlType::String),
        Column::value("URL", SqlType::String),
    ])
}

fn bid(i: usize, timestamp: i64) -> Record {
    // KAFKA-format BIGINT key: 8 bytes big-endian.
    let auction = (i % 50_000) as i64;
    Record {
        key: Some(Bytes::copy_from_slice(&auction.to_be_bytes())),
        value: Some(Bytes::from(format!(
            r#"{{"bidder":{},"price":{},"channel":"{}","url":"https://example.com/a/{}"}}"#,
            i % 7_919,
            i % 100,
            ["web", "app", "api"][i % 3],
            i % 1_000
        ))),
        timestamp,
        headers: Vec::new(),
    }
}

fn keyed_schema() -> LogicalSchema {
    LogicalSchema::new(vec![
        Column::key("K", SqlType::String),
        Column::value("V", SqlType::Bigint),
        Column::value("MATCH", SqlType::String),
    ])
}

fn keyed(i: usize, timestamp: i64) -> Record {
    record(
        format!("key-{}", i % KEYS),
        format!(r#"{{"V":{},"MATCH":"m-{}"}}"#, i % 100, i % 977),
        timestamp,
    )
}

fn moves_schema() -> LogicalSchema {
    LogicalSchema::new(vec![
        Column::key("PLAYER", SqlType::String),
        Column::value("X", SqlType::Bigint),
        Column::value("Y", SqlType::Bigint),
    ])
}

fn moves(i: usize, timestamp: i64) -> Record {
    record(
        format!("p-{}", (i * 7) % (TABLE_ROWS + TABLE_ROWS / 10)),
        format!(r#"{{"x":{},"y":{}}}"#, i % 640, i % 480),
        timestamp,
    )
}

fn players() -> Vec<Record> {
    (0..TABLE_ROWS)
        .map(|i| {
            record(
                format!("p-{i}"),
                format!(
                    r#"{{"name":"player {i}","country":"{}"}}"#,
                    ["DE", "FR", "US", "JP"][i % 4]
                ),
                0,
            )
        })
        .collect()
}
