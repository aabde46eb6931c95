//! The Nexmark scenarios of `sluice bench`: events from the `nexmark`
//! crate's generator (persons, auctions and bids, as JSON on three
//! topics), queries written in the ksqlDB dialect.
//!
//! Nexmark's queries are specified over a relational stream processor;
//! where ksqlDB cannot say a query as specified the closest formulation
//! is used and its description says how it differs:
//! - q5 (hot items) wants, per sliding window, the auction with the most
//!   bids. ksqlDB cannot aggregate a windowed table again, so the
//!   per-auction counts are a windowed table whose change stream a second
//!   query reduces to the highest count per window (the count, not the
//!   auction: ksqlDB has no arg-max aggregate).
//! - q7 (highest bid) wants, per tumbling window, the bids whose price is
//!   the window's maximum. ksqlDB cannot join a stream with a windowed
//!   table, so the maximum is kept per 10-second bucket in a plain table
//!   keyed by the bucket, and the bids stream joins it: each bid is
//!   emitted when it is at least the bucket's maximum known to the join
//!   (the running highest bid, without waiting for the window to close).
//!   The join reads its stream side before its table side, with no
//!   event-time alignment between them, so the table it sees is one batch
//!   behind the bids; a bid whose bucket the table does not know yet is
//!   the highest known, hence the LEFT JOIN.
//! - q8 (monitor new users) wants persons who opened an auction in the
//!   same tumbling window as they registered. A stream-stream join within
//!   10 seconds, filtered to pairs in the same 10-second bucket, is
//!   exactly that pairing (one row per auction rather than per person).
//!
//! Event time: the generator's own clock is replaced by the timestamps
//! `sluice bench` gives (1 ms apart in throughput mode, the wall clock in
//! latency mode), written to `date_time`, which every stream declares as
//! its timestamp column.

use bytes::Bytes;
use nexmark::EventGenerator;
use nexmark::config::NexmarkConfig;
use nexmark::event::{Event, EventType};
use sluice_engine::schema::{Column, LogicalSchema, SqlType};
use sluice_engine::topic::Record;

use super::scenarios::{Events, Input, Scenario};

const BIDS: &[Input] = &[Input {
    topic: "bids",
    schema: bids_schema,
}];

const PERSONS_AUCTIONS: &[Input] = &[
    Input {
        topic: "persons",
        schema: persons_schema,
    },
    Input {
        topic: "auctions",
        schema: auctions_schema,
    },
];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "nexmark-q0",
        description: "Nexmark q0 pass-through: every bid, all columns",
        sql: sql::Q0,
        inputs: BIDS,
        output_topic: "Q0",
        events: bids,
        preload: None,
    },
    Scenario {
        name: "nexmark-q1",
        description: "Nexmark q1 currency conversion: bid prices times 0.908",
        sql: sql::Q1,
        inputs: BIDS,
        output_topic: "Q1",
        events: bids,
        preload: None,
    },
    Scenario {
        name: "nexmark-q2",
        description: "Nexmark q2 selection: bids on auctions whose id is a multiple of 123",
        sql: sql::Q2,
        inputs: BIDS,
        output_topic: "Q2",
        events: bids,
        preload: None,
    },
    Scenario {
        name: "nexmark-q5",
        description: "Nexmark q5 hot items: bids per auction in 10 s windows every 2 s, then the highest count per window",
        sql: sql::Q5,
        inputs: BIDS,
        output_topic: "Q5",
        events: bids,
        preload: None,
    },
    Scenario {
        name: "nexmark-q7",
        description: "Nexmark q7 highest bid: bids at least their 10 s bucket's maximum price (stream-table join)",
        sql: sql::Q7,
        inputs: BIDS,
        output_topic: "Q7",
        events: bids,
        preload: None,
    },
    Scenario {
        name: "nexmark-q8",
        description: "Nexmark q8 new users: persons joined with auctions they opened in the same 10 s window",
        sql: sql::Q8,
        inputs: PERSONS_AUCTIONS,
        output_topic: "Q8",
        events: persons_and_auctions,
        preload: None,
    },
];

/// The statements, each scenario's inputs first.
mod sql {
    // `concat!` rather than `format!`: the scenarios are constants.
    macro_rules! with_bids {
        ($query:literal) => {
            concat!(
                "CREATE STREAM bids (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, date_time BIGINT, extra STRING)
    WITH (kafka_topic='bids', value_format='JSON', partitions=1, timestamp='date_time');
",
                $query
            )
        };
    }

    pub const Q0: &str = with_bids!(
        "CREATE STREAM q0 AS SELECT auction, bidder, price, date_time, extra FROM bids;"
    );
    pub const Q1: &str = with_bids!(
        "CREATE STREAM q1 AS SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bids;"
    );
    pub const Q2: &str =
        with_bids!("CREATE STREAM q2 AS SELECT auction, price FROM bids WHERE auction % 123 = 0;");
    pub const Q5: &str = with_bids!(
        "CREATE TABLE bids_per_auction AS
    SELECT auction, WINDOWSTART AS ws, COUNT(*) AS num FROM bids
    WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 2 SECONDS) GROUP BY auction;
CREATE STREAM bid_count_changes (ws BIGINT, num BIGINT)
    WITH (kafka_topic='BIDS_PER_AUCTION', value_format='JSON');
CREATE TABLE q5 AS SELECT ws, MAX(num) AS max_bids FROM bid_count_changes GROUP BY ws;"
    );
    pub const Q7: &str = with_bids!(
        "CREATE TABLE max_price AS
    SELECT date_time / 10000 AS bucket, MAX(price) AS max_price FROM bids GROUP BY date_time / 10000;
CREATE STREAM q7 AS
    SELECT m.bucket AS bucket, b.auction AS auction, b.price AS price, b.bidder AS bidder, b.date_time AS date_time
    FROM bids b LEFT JOIN max_price m ON b.date_time / 10000 = m.bucket
    WHERE m.max_price IS NULL OR b.price >= m.max_price;"
    );
    pub const Q8: &str = "CREATE STREAM persons (id BIGINT, name STRING, email_address STRING, credit_card STRING, city STRING, state STRING, date_time BIGINT, extra STRING)
    WITH (kafka_topic='persons', value_format='JSON', partitions=1, timestamp='date_time');
CREATE STREAM auctions (id BIGINT, item_name STRING, description STRING, initial_bid BIGINT, reserve BIGINT, date_time BIGINT, expires BIGINT, seller BIGINT, category BIGINT, extra STRING)
    WITH (kafka_topic='auctions', value_format='JSON', partitions=1, timestamp='date_time');
CREATE STREAM q8 AS
    SELECT p.id AS id, p.name AS name, (p.date_time / 10000) * 10000 AS starttime
    FROM persons p JOIN auctions a WITHIN 10 SECONDS ON p.id = a.seller
    WHERE p.date_time / 10000 = a.date_time / 10000;";
}

fn bids_schema() -> LogicalSchema {
    LogicalSchema::new(vec![
        Column::value("AUCTION", SqlType::Bigint),
        Column::value("BIDDER", SqlType::Bigint),
        Column::value("PRICE", SqlType::Bigint),
        Column::value("CHANNEL", SqlType::String),
        Column::value("URL", SqlType::String),
        Column::value("DATE_TIME", SqlType::Bigint),
        Column::value("EXTRA", SqlType::String),
    ])
}

fn persons_schema() -> LogicalSchema {
    LogicalSchema::new(vec![
        Column::value("ID", SqlType::Bigint),
        Column::value("NAME", SqlType::String),
        Column::value("EMAIL_ADDRESS", SqlType::String),
        Column::value("CREDIT_CARD", SqlType::String),
        Column::value("CITY", SqlType::String),
        Column::value("STATE", SqlType::String),
        Column::value("DATE_TIME", SqlType::Bigint),
        Column::value("EXTRA", SqlType::String),
    ])
}

fn auctions_schema() -> LogicalSchema {
    LogicalSchema::new(vec![
        Column::value("ID", SqlType::Bigint),
        Column::value("ITEM_NAME", SqlType::String),
        Column::value("DESCRIPTION", SqlType::String),
        Column::value("INITIAL_BID", SqlType::Bigint),
        Column::value("RESERVE", SqlType::Bigint),
        Column::value("DATE_TIME", SqlType::Bigint),
        Column::value("EXPIRES", SqlType::Bigint),
        Column::value("SELLER", SqlType::Bigint),
        Column::value("CATEGORY", SqlType::Bigint),
        Column::value("EXTRA", SqlType::String),
    ])
}

/// The generator's events of some types, in its order, restamped.
struct Generator {
    config: NexmarkConfig,
    /// Only bids (the generator skips the rest itself), or only persons
    /// and auctions (bids skipped here).
    bids: bool,
    events: EventGenerator,
    /// The `i` the next event would be.
    next: usize,
}

impl Generator {
    fn new(bids: bool) -> Self {
        let config = NexmarkConfig::default();
        let mut g = Generator {
            events: EventGenerator::new(config.clone()),
            config,
            bids,
            next: 0,
        };
        g.seek(0);
        g
    }

    /// Positions the generator at the `i`-th wanted event.
    fn seek(&mut self, i: usize) {
        let generator = EventGenerator::new(self.config.clone());
        self.events = if self.bids {
            generator
                .with_type_filter(EventType::Bid)
                .with_offset(i as u64)
        } else {
            // Of every `denominator` events the first `people + auctions`
            // are persons and auctions, the rest bids.
            let c = &self.config;
            let wanted = c.person_proportion + c.auction_proportion;
            let denominator = wanted + c.bid_proportion;
            generator.with_offset(((i / wanted) * denominator + i % wanted) as u64)
        };
        self.next = i;
    }

    fn event(&mut self, i: usize, timestamp: i64) -> (usize, Record) {
        if i != self.next {
            self.seek(i);
        }
        self.next = i + 1;
        // A generator never ends; `Event::Bid` is skipped only when
        // persons and auctions are wanted.
        let event = loop {
            match self.events.next() {
                Some(Event::Bid(_)) if !self.bids => continue,
                Some(e) => break e,
                None => unreachable!("the Nexmark generator is endless"),
            }
        };
        let time = timestamp.max(0) as u64;
        let (input, value) = match event {
            Event::Bid(mut b) => {
                b.date_time = time;
                (0, serde_json::to_vec(&b))
            }
            Event::Person(mut p) => {
                p.date_time = time;
                (0, serde_json::to_vec(&p))
            }
            Event::Auction(mut a) => {
                a.expires = time + a.expires.saturating_sub(a.date_time);
                a.date_time = time;
                (1, serde_json::to_vec(&a))
            }
        };
        let value = value.unwrap_or_default();
        (
            input,
            Record {
                key: None,
                value: Some(Bytes::from(value)),
                timestamp,
                headers: Vec::new(),
            },
        )
    }
}

fn bids() -> Events {
    let mut g = Generator::new(true);
    Box::new(move |i, t| g.event(i, t))
}

fn persons_and_auctions() -> Events {
    let mut g = Generator::new(false);
    Box::new(move |i, t| g.event(i, t))
}
