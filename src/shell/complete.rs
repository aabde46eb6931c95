//! Tab completion: ksqlDB keywords, and the streams, tables and columns
//! the server has (fetched with `SHOW STREAMS`, `SHOW TABLES` and
//! `DESCRIBE`, refreshed after statements that may change them).

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};
use serde_json::{Map, Value};

use super::client::Client;

const KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "HAVING",
    "EMIT",
    "CHANGES",
    "FINAL",
    "LIMIT",
    "CREATE",
    "STREAM",
    "STREAMS",
    "TABLE",
    "TABLES",
    "SOURCE",
    "OR",
    "REPLACE",
    "IF",
    "NOT",
    "EXISTS",
    "AS",
    "WITH",
    "INSERT",
    "INTO",
    "VALUES",
    "DROP",
    "DELETE",
    "TOPIC",
    "TOPICS",
    "SHOW",
    "LIST",
    "DESCRIBE",
    "EXTENDED",
    "QUERIES",
    "FUNCTIONS",
    "PROPERTIES",
    "TERMINATE",
    "EXPLAIN",
    "PRINT",
    "BEGINNING",
    "INTERVAL",
    "SET",
    "UNSET",
    "RUN",
    "SCRIPT",
    "JOIN",
    "LEFT",
    "RIGHT",
    "FULL",
    "OUTER",
    "INNER",
    "ON",
    "WITHIN",
    "WINDOW",
    "TUMBLING",
    "HOPPING",
    "SESSION",
    "SIZE",
    "ADVANCE",
    "GRACE",
    "PERIOD",
    "PARTITION",
    "KEY",
    "PRIMARY",
    "AND",
    "IN",
    "IS",
    "NULL",
    "LIKE",
    "BETWEEN",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "CAST",
    "COUNT",
    "SUM",
    "MIN",
    "MAX",
    "AVG",
    "LATEST_BY_OFFSET",
    "EARLIEST_BY_OFFSET",
    "ROWTIME",
    "WINDOWSTART",
    "WINDOWEND",
    "SECONDS",
    "MINUTES",
    "HOURS",
    "DAYS",
    "STRING",
    "VARCHAR",
    "INT",
    "INTEGER",
    "BIGINT",
    "DOUBLE",
    "BOOLEAN",
    "DECIMAL",
    "TIMESTAMP",
    "ARRAY",
    "MAP",
    "STRUCT",
    "KAFKA_TOPIC",
    "VALUE_FORMAT",
    "KEY_FORMAT",
    "PARTITIONS",
    "EXIT",
    "QUIT",
];

/// The shell's rustyline helper: completion only.
#[derive(Default)]
pub struct ShellHelper {
    /// Stream, table and column names, sorted, without duplicates.
    names: Vec<String>,
}

impl ShellHelper {
    /// Asks the server for its sources and their columns; a failure keeps
    /// the names known before (completion is a convenience, never an
    /// error).
    pub fn refresh(&mut self, client: &Client, properties: &Map<String, Value>) {
        let mut names = Vec::new();
        for (statement, list_key) in [("SHOW STREAMS;", "streams"), ("SHOW TABLES;", "tables")] {
            let Ok(entities) = client.ksql(statement, properties) else {
                return;
            };
            for e in &entities {
                for source in e[list_key].as_array().into_iter().flatten() {
                    if let Some(name) = source["name"].as_str() {
                        names.push(name.to_string());
                    }
                }
            }
        }
        let mut columns = Vec::new();
        for source in &names {
            let Ok(entities) = client.ksql(&format!("DESCRIBE `{source}`;"), properties) else {
                continue;
            };
            for e in &entities {
                let fields = e["sourceDescription"]["fields"].as_array();
                for f in fields.into_iter().flatten() {
                    if let Some(name) = f["name"].as_str() {
                        columns.push(name.to_string());
                    }
                }
            }
        }
        names.extend(columns);
        names.sort();
        names.dedup();
        self.names = names;
    }

    /// Completions of the word that ends at `pos`.
    pub fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let before = &line[..pos];
        let start = before
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let word = &before[start..];
        if word.is_empty() {
            return (start, Vec::new());
        }
        let upper = word.to_uppercase();
        let lower_case = word.chars().all(|c| !c.is_uppercase());
        let mut out: Vec<String> = self
            .names
            .iter()
            .filter(|n| n.to_uppercase().starts_with(&upper))
            .cloned()
            .collect();
        // Keywords follow the case the user types in.
        out.extend(KEYWORDS.iter().filter(|k| k.starts_with(&upper)).map(|k| {
            if lower_case {
                k.to_lowercase()
            } else {
                k.to_string()
            }
        }));
        out.sort();
        out.dedup();
        (start, out)
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, words) = self.candidates(line, pos);
        Ok((
            start,
            words
                .into_iter()
                .map(|w| Pair {
                    display: w.clone(),
                    replacement: w,
                })
                .collect(),
        ))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {}

impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_names_and_keywords_in_the_typed_case() {
        let helper = ShellHelper {
            names: vec!["MATCH_HISTORY".into(), "MATCH_ID".into(), "PLAYERS".into()],
        };
        let (start, words) = helper.candidates("SELECT * FROM mat", 17);
        assert_eq!(start, 14);
        assert_eq!(words, vec!["MATCH_HISTORY", "MATCH_ID"]);
        let (start, words) = helper.candidates("sel", 3);
        assert_eq!((start, words), (0, vec!["select".to_string()]));
        assert_eq!(helper.candidates("SHOW ", 5).1, Vec::<String>::new());
    }
}
