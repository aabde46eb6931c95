use super::*;

#[test]
fn parses_create_stream_with_types_and_properties() {
    let parsed = parse_statement(
        "CREATE STREAM s (id INT KEY, `name` STRING, tags ARRAY<ARRAY<INT>>, m MAP<STRING, DECIMAL(4, 2)>) \
         WITH (kafka_topic='t', value_format='JSON', partitions=3);",
    )
    .unwrap();
    let Statement::CreateSource(c) = parsed.statement else {
        panic!("not a CREATE")
    };
    assert_eq!(c.name, "S");
    assert_eq!(c.columns[0].name, "ID");
    assert_eq!(c.columns[0].constraint, ColumnConstraint::Key);
    assert_eq!(c.columns[1].name, "name");
    assert_eq!(c.columns[2].sql_type.to_string(), "ARRAY<ARRAY<INTEGER>>");
    assert_eq!(
        c.properties.get("PARTITIONS"),
        Some(&PropertyValue::Number("3".into()))
    );
}

#[test]
fn parses_query_clauses_in_ksql_order() {
    let parsed = parse_statement(
        "CREATE TABLE t AS SELECT a, COUNT(*) AS c FROM s x WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 2 SECONDS) \
         WHERE a > 1 GROUP BY a HAVING COUNT(*) > 2 EMIT CHANGES;",
    )
    .unwrap();
    let Statement::CreateAsSelect(c) = parsed.statement else {
        panic!("not a CTAS")
    };
    assert_eq!(c.query.from.alias.as_deref(), Some("X"));
    assert_eq!(
        c.query.window,
        Some(WindowSpec {
            kind: WindowKind::Tumbling { size_ms: 60_000 },
            retention_ms: None,
            grace_ms: Some(2_000)
        })
    );
    assert_eq!(c.query.group_by.len(), 1);
    assert_eq!(c.query.emit, Some(Emit::Changes));
}

#[test]
fn splits_scripts_and_keeps_statement_text() {
    let parsed = parse_statements("SHOW STREAMS;\n  DROP TABLE IF EXISTS t DELETE TOPIC;").unwrap();
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[1].text, "DROP TABLE IF EXISTS t DELETE TOPIC;");
    assert_eq!((parsed[1].line, parsed[1].column), (2, 3));
}

#[test]
fn errors_carry_line_and_column() {
    let err = parse_statements("SHOW STREAMS;\nCREATE STREAM s (id INT KEY) WITH (kafka_topic=);")
        .unwrap_err();
    match err {
        SqlError::Syntax { line, column, .. } => assert_eq!((line, column), (2, 48)),
        other => panic!("unexpected {other}"),
    }
    assert!(parse_statement("CREATE STREAM s (id NULL)").is_err());
}

#[test]
fn cast_takes_ksql_types() {
    let parsed = parse_statement("SELECT CAST(a AS MAP<STRING, INT>) FROM s;").unwrap();
    let Statement::Select(q) = parsed.statement else {
        panic!("not a SELECT")
    };
    let text = format!("{:?}", q.select[0]);
    assert!(text.contains("MAP<STRING, INTEGER>"), "{text}");
}

#[test]
fn parses_ksql_lambdas_apart_from_field_access() {
    let parsed = parse_statement(
        "CREATE STREAM o AS SELECT TRANSFORM(m, (k, v) => k, (k, v) => v + 1), \
         FILTER(a, x => x > 1), s->f FROM s;",
    )
    .unwrap();
    let Statement::CreateAsSelect(c) = parsed.statement else {
        panic!("not a CREATE AS SELECT")
    };
    let text: Vec<String> = c.query.select.iter().map(|i| i.to_string()).collect();
    let lambdas = text.iter().filter(|t| t.contains("lambda ")).count();
    // Lambdas print in sqlparser's keyword form; field access does not.
    assert_eq!(lambdas, 2, "{text:?}");
    assert!(text[2].contains("->"), "{text:?}");
}

#[test]
fn describe_extended_takes_the_keyword_before_or_after_the_name() {
    for sql in ["DESCRIBE EXTENDED orders;", "DESCRIBE orders EXTENDED;"] {
        let parsed = parse_statement(sql).unwrap();
        assert!(
            matches!(&parsed.statement, Statement::Describe { name, extended: true } if name == "ORDERS"),
            "{sql}: {:?}",
            parsed.statement
        );
    }
}
