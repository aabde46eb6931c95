//! The catalog (ksqlDB's metastore): streams, tables and the persistent
//! queries that write them.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_engine::format::{Format, RecordCodec};
use sluice_engine::schema::LogicalSchema;
use sluice_engine::window::WindowType;

use crate::parser::SourceKind;

/// A stream or table.
#[derive(Debug, Clone)]
pub struct DataSource {
    pub name: String,
    pub kind: SourceKind,
    pub schema: LogicalSchema,
    pub topic: String,
    pub key_format: Format,
    pub value_format: Format,
    pub wrap_single_value: bool,
    /// Column whose value is the event time, instead of the record time.
    pub timestamp_column: Option<String>,
    /// The `TIMESTAMP_FORMAT` pattern of a STRING timestamp column.
    pub timestamp_format: Option<String>,
    /// Set for windowed streams and tables: their keys carry windows.
    pub window: Option<WindowType>,
    /// Declared with `CREATE SOURCE`: readable, never written by INSERT.
    pub read_only: bool,
    /// The statement that created it.
    pub sql: String,
}

impl DataSource {
    pub fn codec(&self) -> RecordCodec {
        RecordCodec::new(
            &self.schema,
            self.key_format.clone(),
            self.value_format.clone(),
            self.wrap_single_value,
        )
    }
}

/// A persistent query as the catalog knows it.
#[derive(Debug, Clone)]
pub struct QueryInfo {
    pub id: String,
    pub sql: String,
    pub sink: String,
    pub sources: Vec<String>,
}

/// Sources and queries, by name.
#[derive(Debug, Default)]
pub struct Catalog {
    sources: BTreeMap<String, Arc<DataSource>>,
    queries: BTreeMap<String, QueryInfo>,
    next_query_number: u64,
}

impl Catalog {
    pub fn source(&self, name: &str) -> Option<&Arc<DataSource>> {
        self.sources.get(name)
    }

    pub fn sources(&self) -> impl Iterator<Item = &Arc<DataSource>> {
        self.sources.values()
    }

    /// A source whose name differs only in case, for "did you mean" hints.
    pub fn source_ignoring_case(&self, name: &str) -> Option<&Arc<DataSource>> {
        self.sources
            .values()
            .find(|s| s.name.eq_ignore_ascii_case(name))
    }

    pub fn put_source(&mut self, source: DataSource) {
        self.sources.insert(source.name.clone(), Arc::new(source));
    }

    pub fn remove_source(&mut self, name: &str) -> Option<Arc<DataSource>> {
        self.sources.remove(name)
    }

    pub fn queries(&self) -> impl Iterator<Item = &QueryInfo> {
        self.queries.values()
    }

    pub fn query(&self, id: &str) -> Option<&QueryInfo> {
        self.queries.get(id)
    }

    /// The next query id: `CSAS_OUTPUT_3`, `INSERTQUERY_4`, as ksqlDB
    /// numbers them (one counter for all queries).
    pub fn next_query_id(&mut self, prefix: &str) -> String {
        let n = self.next_query_number;
        self.next_query_number += 1;
        format!("{prefix}_{n}")
    }

    /// Makes the next query id take number `n` (a replayed statement gets
    /// the id it had).
    pub fn set_next_query_number(&mut self, n: u64) {
        self.next_query_number = n;
    }

    pub fn put_query(&mut self, query: QueryInfo) {
        self.queries.insert(query.id.clone(), query);
    }

    pub fn remove_query(&mut self, id: &str) -> Option<QueryInfo> {
        self.queries.remove(id)
    }

    /// Ids of queries that read from / write into a source.
    pub fn queries_using(&self, source: &str) -> (Vec<String>, Vec<String>) {
        let readers = self
            .queries
            .values()
            .filter(|q| q.sources.iter().any(|s| s == source))
            .map(|q| q.id.clone())
            .collect();
        let writers = self
            .queries
            .values()
            .filter(|q| q.sink == source)
            .map(|q| q.id.clone())
            .collect();
        (readers, writers)
    }
}
