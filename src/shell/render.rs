//! Rendering answers as aligned text tables, as ksqlDB's CLI prints them:
//! `/ksql` entities by their `@type`, pull-query results as one table,
//! and push-query rows one line at a time as they arrive.

use comfy_table::{Table, presets};
use serde_json::Value;

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::ASCII_FULL_CONDENSED);
    t.set_header(header.iter().copied());
    t
}

/// A value as a table cell: text without quotes, the rest as JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

fn field(v: &Value, key: &str) -> String {
    v.get(key).map(cell).unwrap_or_default()
}

fn sources(list: &Value, kind: &str) -> String {
    let mut t = table(&[
        &format!("{kind} Name"),
        "Kafka Topic",
        "Key Format",
        "Value Format",
        "Windowed",
    ]);
    for s in list.as_array().into_iter().flatten() {
        t.add_row(vec![
            field(s, "name"),
            field(s, "topic"),
            field(s, "keyFormat"),
            field(s, "valueFormat"),
            field(s, "isWindowed"),
        ]);
    }
    t.to_string()
}

fn description(d: &Value) -> String {
    let mut out = String::new();
    let mut about = table(&["Name", &field(d, "name")]);
    for (label, key) in [
        ("Type", "type"),
        ("Timestamp field", "timestamp"),
        ("Key format", "keyFormat"),
        ("Value format", "valueFormat"),
        ("Kafka topic", "topic"),
        ("Partitions", "partitions"),
        ("Statistics", "statistics"),
        ("Errors", "errorStats"),
        ("Statement", "statement"),
    ] {
        let value = field(d, key);
        if !value.is_empty() {
            about.add_row(vec![label.to_string(), value]);
        }
    }
    out.push_str(&about.to_string());
    out.push('\n');
    let mut fields = table(&["Field", "Type"]);
    for f in d["fields"].as_array().into_iter().flatten() {
        let mut kind = f["schema"]["type"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| cell(&f["schema"]));
        if f.get("type").and_then(Value::as_str) == Some("KEY") {
            kind.push_str(" (key)");
        }
        fields.add_row(vec![field(f, "name"), kind]);
    }
    out.push_str(&fields.to_string());
    for (label, key) in [
        ("Queries that read from this source", "readQueries"),
        ("Queries that write into this source", "writeQueries"),
    ] {
        let ids: Vec<String> = d[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|q| field(q, "id"))
            .collect();
        if !ids.is_empty() {
            out.push_str(&format!("\n{label}: {}", ids.join(", ")));
        }
    }
    out
}

/// One `/ksql` entity as text.
pub fn entity(e: &Value) -> String {
    match e.get("@type").and_then(Value::as_str).unwrap_or_default() {
        "currentStatus" => {
            let mut t = table(&["Message"]);
            t.add_row(vec![field(&e["commandStatus"], "message")]);
            t.to_string()
        }
        "streams" => sources(&e["streams"], "Stream"),
        "tables" => sources(&e["tables"], "Table"),
        "queries" => {
            let mut t = table(&[
                "Query ID",
                "Query Type",
                "Status",
                "Sink Name",
                "Records In",
                "Records Out",
                "Lag",
                "Query String",
            ]);
            for q in e["queries"].as_array().into_iter().flatten() {
                let sinks: Vec<String> = q["sinks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(cell)
                    .collect();
                t.add_row(vec![
                    field(q, "id"),
                    field(q, "queryType"),
                    field(q, "state"),
                    sinks.join(", "),
                    field(&q["metrics"], "recordsIn"),
                    field(&q["metrics"], "recordsOut"),
                    field(&q["metrics"], "consumerLag"),
                    field(q, "queryString"),
                ]);
            }
            t.to_string()
        }
        "kafka_topics" => {
            let mut t = table(&["Kafka Topic", "Partitions", "Partition Replicas"]);
            for topic in e["topics"].as_array().into_iter().flatten() {
                let replicas = topic["replicaInfo"].as_array();
                t.add_row(vec![
                    field(topic, "name"),
                    replicas.map_or(0, Vec::len).to_string(),
                    replicas
                        .and_then(|r| r.first())
                        .map(cell)
                        .unwrap_or_default(),
                ]);
            }
            t.to_string()
        }
        "sourceDescription" => description(&e["sourceDescription"]),
        "queryDescription" => {
            let q = &e["queryDescription"];
            let list = |key: &str| -> String {
                q[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(cell)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut t = table(&["ID", &field(q, "id")]);
            t.add_row(vec!["Query Type".to_string(), field(q, "queryType")]);
            t.add_row(vec!["Status".to_string(), field(q, "state")]);
            t.add_row(vec!["SQL".to_string(), field(q, "statementText")]);
            t.add_row(vec!["Sources".to_string(), list("sources")]);
            t.add_row(vec!["Sinks".to_string(), list("sinks")]);
            t.add_row(vec![
                "Execution plan".to_string(),
                field(q, "executionPlan"),
            ]);
            if let Some(metrics) = q["metrics"].as_object() {
                for (name, value) in metrics {
                    t.add_row(vec![name.clone(), cell(value)]);
                }
            }
            t.to_string()
        }
        "function_names" => {
            let mut t = table(&["Function Name", "Type"]);
            for f in e["functions"].as_array().into_iter().flatten() {
                t.add_row(vec![field(f, "name"), field(f, "type")]);
            }
            t.to_string()
        }
        "properties" => {
            let mut t = table(&["Property", "Value"]);
            match &e["properties"] {
                Value::Object(map) => {
                    for (k, v) in map {
                        t.add_row(vec![k.clone(), cell(v)]);
                    }
                }
                Value::Array(list) => {
                    for p in list {
                        t.add_row(vec![field(p, "name"), field(p, "value")]);
                    }
                }
                _ => {}
            }
            t.to_string()
        }
        // An entity this shell does not know: its JSON, not nothing.
        _ => serde_json::to_string_pretty(e).unwrap_or_else(|_| e.to_string()),
    }
}

/// A pull query's rows as one table.
pub fn rows(columns: &[String], rows: &[Vec<Value>]) -> String {
    let header: Vec<&str> = columns.iter().map(String::as_str).collect();
    let mut t = table(&header);
    for row in rows {
        t.add_row(row.iter().map(cell));
    }
    t.to_string()
}

/// Prints push-query rows as they come, in columns as wide as the header
/// or the widest value seen so far; wider values widen the column from
/// then on rather than being cut.
pub struct StreamTable {
    widths: Vec<usize>,
}

impl StreamTable {
    /// The table's header lines.
    pub fn start(columns: &[String]) -> (Self, String) {
        let widths: Vec<usize> = columns.iter().map(|c| c.chars().count().max(8)).collect();
        let table = StreamTable { widths };
        let cells: Vec<String> = columns.to_vec();
        let rule = table.rule();
        let header = format!("{rule}\n{}\n{rule}", table.line(&cells));
        (table, header)
    }

    fn rule(&self) -> String {
        let parts: Vec<String> = self.widths.iter().map(|w| "-".repeat(w + 2)).collect();
        format!("+{}+", parts.join("+"))
    }

    fn line(&self, cells: &[String]) -> String {
        let parts: Vec<String> = cells
            .iter()
            .zip(&self.widths)
            .map(|(c, w)| format!(" {c:<w$} "))
            .collect();
        format!("|{}|", parts.join("|"))
    }

    /// One row as a line.
    pub fn row(&mut self, row: &[Value]) -> String {
        let cells: Vec<String> = row.iter().map(cell).collect();
        for (w, c) in self.widths.iter_mut().zip(&cells) {
            *w = (*w).max(c.chars().count());
        }
        self.line(&cells)
    }

    /// The closing rule.
    pub fn end(&self) -> String {
        self.rule()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_list_sources() {
        let text = entity(&json!({"@type": "tables", "tables": [
            {"name": "T1", "topic": "t1", "keyFormat": "KAFKA", "valueFormat": "JSON", "isWindowed": false}
        ]}));
        assert!(text.contains("Table Name"), "{text}");
        let line = text.lines().find(|l| l.contains("T1")).unwrap_or_default();
        assert!(line.contains("| t1 ") && line.contains("JSON"), "{text}");
    }

    #[test]
    fn stream_rows_align_with_the_header() {
        let (mut t, header) = StreamTable::start(&["ID".into(), "NAME".into()]);
        let row = t.row(&[json!(1), json!("x")]);
        assert_eq!(header.lines().nth(1).map(str::len), Some(row.len()));
        assert_eq!(row, "| 1        | x        |");
    }
}
