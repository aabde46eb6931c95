//! Statement results rendered as the entities ksqlDB's `/ksql` returns.

use serde_json::{Value, json};
use sluice_sql::StatementResult;
use sluice_sql::catalog::DataSource;
use sluice_sql::functions::FunctionKind;

fn source_summary(s: &DataSource) -> Value {
    json!({
        "type": s.kind.name(),
        "name": s.name,
        "topic": s.topic,
        "keyFormat": s.key_format.name(),
        "valueFormat": s.value_format.name(),
        "isWindowed": s.window.is_some(),
    })
}

/// A query's operators, one stage a line: each input from its topic, the
/// joins, then what runs before the sink. A query run in stages (a
/// repartitioned aggregate) lists the stages before it first, each with
/// the internal topic it writes.
fn execution_plan(plan: &sluice_engine::runtime::QueryExplanation) -> String {
    let chain = |ops: &[&str]| ops.iter().map(|op| format!(" -> {op}")).collect::<String>();
    let mut lines: Vec<String> = Vec::new();
    for stage in &plan.stages {
        lines.push(format!("stage {}:", stage.metrics.id));
        lines.extend(execution_plan(stage).lines().map(|l| format!("  {l}")));
    }
    if !plan.stages.is_empty() {
        lines.push(format!("stage {}:", plan.metrics.id));
    }
    lines.extend(
        plan.inputs
            .iter()
            .enumerate()
            .map(|(i, (topic, ops))| format!("input {i}: topic {topic}{}", chain(ops))),
    );
    for (i, (join, ops)) in plan.joins.iter().enumerate() {
        lines.push(format!("join {i}: {join}{}", chain(ops)));
    }
    lines.push(format!(
        "output{} -> sink topic {}",
        chain(&plan.operators),
        plan.metrics.sink
    ));
    lines.join("\n")
}

/// One entity for one executed statement.
pub fn render(statement: &str, result: &StatementResult, sequence: u64) -> Value {
    match result {
        StatementResult::Status { message } => json!({
            "@type": "currentStatus",
            "statementText": statement,
            "commandStatus": {"status": "SUCCESS", "message": message},
            "commandSequenceNumber": sequence,
            "warnings": [],
        }),
        StatementResult::QueryStarted {
            query_id, message, ..
        } => json!({
            "@type": "currentStatus",
            "statementText": statement,
            "commandStatus": {"status": "SUCCESS", "message": message, "queryId": query_id},
            "commandSequenceNumber": sequence,
            "warnings": [],
        }),
        StatementResult::Streams(list) => json!({
            "@type": "streams",
            "statementText": statement,
            "streams": list.iter().map(|s| source_summary(s)).collect::<Vec<_>>(),
            "warnings": [],
        }),
        StatementResult::Tables(list) => json!({
            "@type": "tables",
            "statementText": statement,
            "tables": list.iter().map(|s| source_summary(s)).collect::<Vec<_>>(),
            "warnings": [],
        }),
        StatementResult::Queries(list) => json!({
            "@type": "queries",
            "statementText": statement,
            "queries": list.iter().map(|q| json!({
                "queryString": q.info.sql,
                "sinks": [q.info.sink],
                "id": q.info.id,
                "queryType": "PERSISTENT",
                "state": q.state,
                "statusCount": {q.state.clone(): 1},
            })).collect::<Vec<_>>(),
            "warnings": [],
        }),
        StatementResult::Topics(topics) => json!({
            "@type": "kafka_topics",
            "statementText": statement,
            "topics": topics.iter().map(|t| json!({
                "name": t.name,
                "replicaInfo": vec![t.replicas; t.partitions as usize],
            })).collect::<Vec<_>>(),
            "warnings": [],
        }),
        StatementResult::Description(d) => {
            let fields: Vec<Value> = d
                .source
                .schema
                .columns()
                .iter()
                .map(|c| {
                    let mut field =
                        json!({"name": c.name, "schema": {"type": c.sql_type.to_string()}});
                    if c.kind == sluice_engine::schema::ColumnKind::Key {
                        field["type"] = json!("KEY");
                    }
                    field
                })
                .collect();
            let mut description = json!({
                "@type": "sourceDescription",
                "statementText": statement,
                "sourceDescription": {
                    "name": d.source.name,
                    "type": d.source.kind.name(),
                    "readQueries": d.readers.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
                    "writeQueries": d.writers.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
                    "fields": fields,
                    "timestamp": d.source.timestamp_column.clone().unwrap_or_default(),
                    "keyFormat": d.source.key_format.name(),
                    "valueFormat": d.source.value_format.name(),
                    "topic": d.source.topic,
                    "partitions": d.partitions.unwrap_or(0),
                    "statement": d.source.sql,
                    "windowType": d.source.window.as_ref().map(|w| w.name()),
                    "extended": d.delivery.is_some(),
                },
                "warnings": [],
            });
            // DESCRIBE ... EXTENDED: what a crash does to this source's data.
            if let Some(delivery) = &d.delivery {
                description["sourceDescription"]["deliveryGuarantee"] = json!(delivery);
            }
            description
        }
        StatementResult::Functions(functions) => json!({
            "@type": "function_names",
            "statementText": statement,
            "functions": functions.iter().map(|(name, kind)| json!({
                "name": name,
                "type": match kind { FunctionKind::Scalar => "SCALAR", FunctionKind::Aggregate => "AGGREGATE" },
            })).collect::<Vec<_>>(),
            "warnings": [],
        }),
        StatementResult::FunctionDescription { name, kind, doc } => {
            // ksqlDB's `describe_function` entity; one variant, described by
            // the signature text of the function reference.
            let return_type = doc
                .signature
                .rsplit_once("->")
                .map(|(_, r)| r.trim())
                .unwrap_or_default();
            json!({
                "@type": "describe_function",
                "statementText": statement,
                "name": name,
                "description": doc.description,
                "author": "Sluice",
                "version": env!("CARGO_PKG_VERSION"),
                "path": "internal",
                "type": match kind { FunctionKind::Scalar => "SCALAR", FunctionKind::Aggregate => "AGGREGATE" },
                "functions": [{
                    "signature": doc.signature,
                    "returnType": return_type,
                    "description": doc.description,
                    "example": doc.example,
                }],
                "warnings": [],
            })
        }
        StatementResult::Explanation(e) => {
            let m = &e.plan.metrics;
            json!({
                "@type": "queryDescription",
                "statementText": statement,
                "queryDescription": {
                    "id": e.info.id,
                    "statementText": e.info.sql,
                    "sources": e.info.sources,
                    "sinks": [e.info.sink],
                    "queryType": "PERSISTENT",
                    "state": e.state,
                    "executionPlan": execution_plan(&e.plan),
                    "overriddenProperties": {},
                    "metrics": {
                        "recordsIn": m.records_in,
                        "recordsOut": m.records_out,
                        "stateRows": m.state_rows,
                        "lateRecords": m.late_records,
                        "consumerLag": m.lag,
                    },
                },
                "warnings": [],
            })
        }
        StatementResult::Properties(props) => json!({
            "@type": "properties",
            "statementText": statement,
            "properties": props,
            "warnings": [],
        }),
    }
}
