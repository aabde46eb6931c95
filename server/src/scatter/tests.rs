use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, RecordBatchOptions, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{Expr, lit};
use sluice_engine::processing_log::ProcessingLog;
use sluice_engine::runtime::Runtime;
use sluice_sql::KsqlContext;

use super::*;
use crate::materialized::{DEFAULT_STREAM_ROW_LIMIT, Materializer};

/// A column as DataFusion names it after planning (no case folding).
fn c(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

fn context() -> Arc<KsqlContext> {
    let backend = Arc::new(sluice_connectors::EmbeddedTopics::new());
    let runtime = Arc::new(Runtime::new(
        backend,
        Arc::new(ProcessingLog::default()),
        16,
    ));
    Arc::new(KsqlContext::new(runtime))
}

#[test]
fn ipc_round_trips_batches_even_without_columns() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("K", DataType::Utf8, true),
        Field::new("V", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])) as ArrayRef,
            Arc::new(Int64Array::from(vec![1, 2, 3])),
        ],
    )
    .expect("batch");
    let bytes = encode_ipc(&schema, &[batch.clone(), batch.slice(1, 1)]).expect("encode");
    let back = decode_ipc(&bytes).expect("decode");
    assert_eq!(back, vec![batch.clone(), batch.slice(1, 1)]);

    // COUNT(*) scans ask for no column: only row counts travel.
    let empty = Arc::new(Schema::empty());
    let counted = RecordBatch::try_new_with_options(
        empty.clone(),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(42)),
    )
    .expect("batch");
    let back = decode_ipc(&encode_ipc(&empty, &[counted]).expect("encode")).expect("decode");
    assert_eq!(back.iter().map(RecordBatch::num_rows).sum::<usize>(), 42);

    assert!(decode_ipc(b"not arrow").is_err());
}

fn table(ctx: &KsqlContext, ddl: &str, name: &str) -> Arc<DataSource> {
    ctx.execute(ddl).expect("ddl");
    ctx.source(name).expect("source")
}

#[test]
fn a_pinned_key_routes_to_kafkas_partition_for_it() {
    let ctx = context();
    let t = table(
        &ctx,
        "CREATE TABLE t (k STRING PRIMARY KEY, v INT) WITH (kafka_topic='t', value_format='JSON', partitions=6);",
        "T",
    );
    let spec = sluice_sql::context::source_spec(&t).expect("spec");
    let schema = spec.schema.batch_schema(false);
    // KAFKA-format STRING keys are their UTF-8 bytes; Kafka's murmur2 of
    // "foobar" is -790332482 and of "abc" 479470107 (Kafka's UtilsTest),
    // so with six partitions they live in partitions 0 and 3.
    let pinned = |filters: &[Expr]| pinned_partitions(&t, &schema, filters, 6);
    assert_eq!(pinned(&[c("K").eq(lit("foobar"))]), Some(vec![0]));
    assert_eq!(pinned(&[lit("abc").eq(c("K"))]), Some(vec![3]));
    assert_eq!(
        pinned(&[c("K").in_list(vec![lit("abc"), lit("foobar")], false)]),
        Some(vec![0, 3])
    );
    // Conditions that do not pin the key scan everything.
    assert_eq!(pinned(&[c("V").eq(lit(1))]), None);
    assert_eq!(pinned(&[c("K").gt(lit("a"))]), None);
    assert_eq!(
        pinned(&[c("K").in_list(vec![lit("abc")], true)]),
        None,
        "NOT IN"
    );
    assert_eq!(pinned(&[]), None);
    // A key no literal can be: nothing to ask for.
    assert_eq!(
        pinned(&[c("K").eq(lit(ScalarValue::Utf8(None)))]),
        Some(vec![])
    );

    // The keys travel to the members as Arrow, typed as the key.
    let keys = pinned_keys(
        &t,
        &schema,
        &[c("K").in_list(vec![lit("abc"), lit("foobar")], false)],
    )
    .expect("pinned");
    let back = decode_keys(&encode_keys(&t, &keys).expect("encode")).expect("decode");
    assert_eq!(back, keys);
    assert!(decode_keys("not base64 arrow").is_err());
}

#[test]
fn pinned_partitions_agree_with_where_inserts_land() {
    let ctx = context();
    let m = Materializer::attach(&ctx, DEFAULT_STREAM_ROW_LIMIT);
    let t = table(
        &ctx,
        "CREATE TABLE users (id INT PRIMARY KEY, name STRING) WITH (kafka_topic='users', value_format='JSON', partitions=6);",
        "USERS",
    );
    for id in 0..40 {
        ctx.execute(&format!(
            "INSERT INTO users (id, name) VALUES ({id}, 'u{id}');"
        ))
        .expect("insert");
    }
    ctx.runtime().run_until_idle();
    let snap = m.snapshots(&["USERS".into()]).remove(0).expect("snapshot");
    let mut seen = std::collections::BTreeSet::new();
    for batch in snap.batches().expect("rows") {
        let ids = batch
            .column_by_name("ID")
            .expect("ID")
            .as_any()
            .downcast_ref::<Int32Array>()
            .expect("INT")
            .clone();
        let partitions = batch
            .column_by_name("ROWPARTITION")
            .expect("ROWPARTITION")
            .as_any()
            .downcast_ref::<Int32Array>()
            .expect("INT")
            .clone();
        for row in 0..batch.num_rows() {
            let id = ids.value(row);
            let filter = Expr::Column(Column::new_unqualified("ID")).eq(lit(id));
            assert_eq!(
                pinned_partitions(&t, &snap.schema, &[filter], 6),
                Some(vec![partitions.value(row)]),
                "key {id}"
            );
            seen.insert(partitions.value(row));
        }
    }
    assert!(seen.len() > 1, "keys spread over partitions: {seen:?}");
    // Outside a cluster every key is held here.
    let keys: Vec<ArrayRef> = vec![Arc::new(Int32Array::from(vec![1, 2, 3]))];
    assert!(holds_keys(&snap, &keys));
}

#[test]
fn windowed_tables_and_streams_are_not_routed_by_key() {
    let ctx = context();
    let s = table(
        &ctx,
        "CREATE STREAM s (k STRING KEY, v INT) WITH (kafka_topic='s', value_format='JSON', partitions=6);",
        "S",
    );
    let spec = sluice_sql::context::source_spec(&s).expect("spec");
    let schema = spec.schema.batch_schema(false);
    assert_eq!(
        pinned_partitions(&s, &schema, &[c("K").eq(lit("abc"))], 6),
        None
    );
}

#[test]
fn filters_travel_as_sql_over_unqualified_columns() {
    let qualified = Expr::Column(Column::new(Some("A"), "K"))
        .eq(lit("x"))
        .and(c("V").gt(lit(ScalarValue::Int32(Some(3)))));
    let sql = filter_sql(&qualified).expect("sql");
    assert!(!sql.contains("\"A\""), "{sql}");
    assert!(sql.contains("\"K\" = 'x'"), "{sql}");
    assert!(sql.contains("\"V\" > 3"), "{sql}");
}

#[tokio::test]
async fn members_apply_filters_they_can_plan_and_leave_the_rest() {
    let ctx = context();
    let schema = Arc::new(Schema::new(vec![
        Field::new("K", DataType::Utf8, true),
        Field::new("V", DataType::Int32, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef,
            Arc::new(Int32Array::from(vec![1, 2, 3])),
        ],
    )
    .expect("batch");
    let request = |filters: Vec<&str>, limit| ScanRequest {
        source: "T".into(),
        partitions: vec![0],
        columns: None,
        filters: filters.into_iter().map(String::from).collect(),
        limit,
        keys: None,
    };
    let rows = |batches: Vec<RecordBatch>| batches.iter().map(|b| b.num_rows()).sum::<usize>();
    let kept = narrow(
        &ctx,
        schema.clone(),
        vec![batch.clone()],
        &request(vec!["\"V\" >= 2"], None),
    )
    .await
    .expect("narrow");
    assert_eq!(rows(kept), 2);
    // A filter that does not plan here is the coordinator's to apply.
    let kept = narrow(
        &ctx,
        schema.clone(),
        vec![batch.clone()],
        &request(vec!["no_such_function(\"V\")"], None),
    )
    .await
    .expect("narrow");
    assert_eq!(rows(kept), 3);
    let kept = narrow(&ctx, schema, vec![batch], &request(vec![], Some(2)))
        .await
        .expect("narrow");
    assert_eq!(rows(kept), 2);
}

#[test]
fn scan_requests_keep_their_json_shape() {
    let request: ScanRequest =
        serde_json::from_str(r#"{"source":"T","partitions":[1,4]}"#).expect("request");
    assert_eq!(request.columns, None);
    assert!(request.filters.is_empty());
    assert_eq!(request.limit, None);
}

async fn scan_call(
    state: &crate::AppState,
    body: &str,
    authorization: Option<&str>,
) -> (axum::http::StatusCode, Vec<u8>) {
    use tower::ServiceExt;
    let mut request = axum::http::Request::builder()
        .method("POST")
        .uri("/internal/scan")
        .header("content-type", "application/json");
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    let response = crate::router(state.clone())
        .oneshot(
            request
                .body(axum::body::Body::from(body.to_string()))
                .expect("request"),
        )
        .await
        .expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, bytes.to_vec())
}

#[tokio::test]
async fn internal_scans_need_credentials_and_a_ready_share() {
    let ctx = context();
    ctx.execute(
        "CREATE TABLE t (k STRING PRIMARY KEY, v INT) WITH (kafka_topic='t', value_format='JSON', partitions=2);
         INSERT INTO t (k, v) VALUES ('a', 1);",
    )
    .expect("statements");
    let state = crate::AppState::new(
        ctx.clone(),
        "test",
        crate::ServerConfig {
            auth: Some(crate::auth::Auth::Bearer {
                token: "tok".into(),
            }),
            ..crate::ServerConfig::default()
        },
    );
    ctx.runtime().run_until_idle();
    let scan = r#"{"source":"T","partitions":[0,1]}"#;
    let (status, _) = scan_call(&state, scan, None).await;
    assert_eq!(status, axum::http::StatusCode::UNAUTHORIZED);
    // Outside a cluster a server holds no share to give.
    let (status, body) = scan_call(&state, scan, Some("Bearer tok")).await;
    assert_eq!(status, axum::http::StatusCode::BAD_REQUEST);
    assert!(
        String::from_utf8_lossy(&body).contains("not a member of a cluster"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, _) = scan_call(&state, r#"{"source":1}"#, Some("Bearer tok")).await;
    assert_eq!(status, axum::http::StatusCode::BAD_REQUEST);
    // Nor does a snapshot without a split: no partition is ready in it.
    let snapshot = state.materializer.snapshots(&["T".into()]).remove(0);
    let request: ScanRequest = serde_json::from_str(scan).expect("request");
    match local_rows(&snapshot.expect("snapshot"), &request) {
        Err(ServerError::Unavailable(m)) => assert!(m.contains("partition 0 of T"), "{m}"),
        other => panic!("unavailable expected: {other:?}"),
    }
}
