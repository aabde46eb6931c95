//! The fast path must answer exactly what the general path answers, and
//! must be the one answering the queries it claims.

use std::sync::Arc;

use sluice_engine::processing_log::ProcessingLog;
use sluice_engine::runtime::Runtime;
use sluice_engine::topic::TopicBackend;
use sluice_sql::KsqlContext;

use super::LookupCache;
use crate::materialized::{DEFAULT_STREAM_ROW_LIMIT, Materializer};
use crate::pull::{self, PullResult};

fn context() -> (Arc<KsqlContext>, Arc<Materializer>) {
    let backend: Arc<dyn TopicBackend> = Arc::new(sluice_connectors::EmbeddedTopics::new());
    let runtime = Arc::new(Runtime::new(
        backend,
        Arc::new(ProcessingLog::default()),
        16,
    ));
    let ctx = Arc::new(KsqlContext::new(runtime));
    let m = Materializer::attach(&ctx, DEFAULT_STREAM_ROW_LIMIT);
    (ctx, m)
}

fn run(ctx: &KsqlContext, sql: &str) {
    if let Err(e) = ctx.execute(sql) {
        panic!("{sql}: {e}");
    }
    ctx.runtime().run_until_idle();
}

/// Columns and rows, or the error, as text.
fn answer(result: &Result<PullResult, crate::ServerError>) -> String {
    match result {
        Ok(r) => {
            let columns: Vec<String> = r
                .columns
                .iter()
                .map(|c| format!("{} {} {}", c.name, c.sql_type, c.key))
                .collect();
            format!("{columns:?} {:?}", r.rows)
        }
        Err(e) => format!("error: {}", e.body()),
    }
}

/// Runs `sql` both ways; checks the answers agree and whether the fast
/// path took it; returns the answer.
async fn both(
    ctx: &KsqlContext,
    m: &Materializer,
    cache: &LookupCache,
    sql: &str,
    fast: bool,
) -> String {
    let before = cache.answered();
    let quick = pull::execute(ctx, m, Some(cache), sql).await;
    assert_eq!(
        cache.answered() - before,
        u64::from(fast),
        "fast path taken? {sql}"
    );
    let general = pull::execute(ctx, m, None, sql).await;
    let (quick, general) = (answer(&quick), answer(&general));
    assert_eq!(quick, general, "{sql}");
    quick
}

#[tokio::test]
async fn key_lookups_answer_as_the_general_path() {
    let (ctx, m) = context();
    run(
        &ctx,
        "CREATE TABLE users (id BIGINT PRIMARY KEY, name STRING, region STRING, score INT)
           WITH (kafka_topic='users', value_format='JSON', partitions=2);
         INSERT INTO users (id, name, region, score) VALUES (1, 'ann', 'north', 10);
         INSERT INTO users (id, name, region, score) VALUES (2, 'bob', 'south', 20);
         INSERT INTO users (id, name, region, score) VALUES (3, 'cy', NULL, 30);
         INSERT INTO users (id, name, region, score) VALUES (-4, 'di', 'west', 40);
         INSERT INTO users (id, name, region, score) VALUES (2, 'bob', 'east', 25);",
    );
    let cache = LookupCache::new();
    let cases = [
        ("SELECT * FROM users WHERE id = 2;", true),
        ("select * from users where ID = 2;", true),
        (
            "SELECT name, score * 2 FROM users WHERE id = 2 AND score > 20;",
            true,
        ),
        (
            "SELECT name, score * 2 FROM users WHERE id = 2 AND score > 25;",
            true,
        ),
        ("SELECT * FROM users WHERE 3 = id;", true),
        (
            "SELECT * FROM users WHERE (id = 3) AND (region IS NULL OR score < 0);",
            true,
        ),
        ("SELECT * FROM users WHERE id = -4;", true),
        ("SELECT u.name, u.id FROM users u WHERE u.id = 1;", true),
        ("SELECT * FROM users WHERE id = 99;", true),
        ("SELECT * FROM users WHERE id = 50000000000000;", true),
        (
            "SELECT UCASE(name) AS n, CAST(score AS STRING), id + 1 FROM users WHERE id = 1;",
            true,
        ),
        ("SELECT * FROM users WHERE id = 1 AND id = 2;", true),
        ("SELECT 'x' FROM users WHERE id = 1;", true),
        ("SELECT * FROM users WHERE id IN (3, 1, 99, 3);", true),
        (
            "SELECT name FROM users WHERE id IN (2, -4) AND score > 30;",
            true,
        ),
        ("SELECT * FROM users WHERE id IN (50000000000000);", true),
        ("SELECT * FROM users WHERE id NOT IN (1, 2);", false),
        ("SELECT * FROM users WHERE id IN (1, NULL);", false),
        ("SELECT * FROM users WHERE id IN (1, '2');", false),
        // Not lookups: the general path answers.
        ("SELECT * FROM users WHERE id = 1 OR id = 2;", false),
        ("SELECT * FROM users WHERE id > 1;", false),
        ("SELECT * FROM users WHERE id = 2 ORDER BY name;", false),
        ("SELECT * FROM users WHERE id = 2 LIMIT 1;", false),
        ("SELECT COUNT(*) FROM users WHERE id = 2;", false),
        ("SELECT * FROM users WHERE id = '2';", false),
        ("SELECT * FROM users WHERE id = 2.0;", false),
        ("SELECT * FROM users WHERE id = NULL;", false),
        ("SELECT nope FROM users WHERE id = 1;", false),
        ("SELECT * FROM users WHERE id = 1 AND nope = 2;", false),
        ("SELECT * FROM users WHERE name = 'ann';", false),
    ];
    for (sql, fast) in cases {
        both(&ctx, &m, &cache, sql, fast).await;
    }
    // A cached shape answers other keys, and sees new rows.
    let a = both(
        &ctx,
        &m,
        &cache,
        "SELECT name FROM users WHERE id = 1;",
        true,
    )
    .await;
    assert!(a.contains("ann"), "{a}");
    run(
        &ctx,
        "INSERT INTO users (id, name, region, score) VALUES (1, 'ann2', 'x', 1);",
    );
    let a = both(
        &ctx,
        &m,
        &cache,
        "SELECT name FROM users WHERE id = 1;",
        true,
    )
    .await;
    assert!(a.contains("ann2"), "{a}");
    let a = both(
        &ctx,
        &m,
        &cache,
        "SELECT name FROM users WHERE id = 3;",
        true,
    )
    .await;
    assert!(a.contains("cy"), "{a}");
}

#[tokio::test]
async fn string_and_windowed_keys() {
    let (ctx, m) = context();
    run(
        &ctx,
        "CREATE TABLE t (k STRING PRIMARY KEY, v INT)
           WITH (kafka_topic='t', value_format='JSON', partitions=1);
         INSERT INTO t (k, v) VALUES ('a', 1);
         INSERT INTO t (k, v) VALUES ('ab', 2);
         INSERT INTO t (k, v) VALUES ('', 3);
         CREATE TABLE n (k INT PRIMARY KEY, v INT)
           WITH (kafka_topic='n', value_format='JSON', partitions=1);
         INSERT INTO n (k, v) VALUES (705032704, 1);
         INSERT INTO n (k, v) VALUES (-2147483648, 2);
         CREATE STREAM clicks (user STRING KEY, page STRING)
           WITH (kafka_topic='clicks', value_format='JSON', partitions=1);
         CREATE TABLE per_minute AS SELECT user, COUNT(*) AS count FROM clicks
           WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY user;",
    );
    for (user, ts) in [
        ("a", 1_000),
        ("a", 2_000),
        ("ab", 3_000),
        ("a", 61_000),
        ("a", 200_000),
    ] {
        run(
            &ctx,
            &format!("INSERT INTO clicks (user, page, ROWTIME) VALUES ('{user}', 'p', {ts});"),
        );
    }
    let cache = LookupCache::new();
    let cases = [
        ("SELECT * FROM t WHERE k = 'a';", true),
        ("SELECT * FROM t WHERE k = '';", true),
        ("SELECT * FROM t WHERE k = 'b';", true),
        ("SELECT * FROM t WHERE k = 1;", false),
        ("SELECT * FROM per_minute WHERE user = 'a';", true),
        (
            "SELECT * FROM per_minute WHERE user = 'a' AND WINDOWSTART = 0;",
            true,
        ),
        (
            "SELECT count FROM per_minute WHERE user = 'a' AND WINDOWSTART >= 60000 AND WINDOWEND <= 240000;",
            true,
        ),
        ("SELECT * FROM per_minute WHERE user = 'ab';", true),
        (
            "SELECT * FROM per_minute WHERE user IN ('ab', 'a', 'zz') AND WINDOWSTART > 0;",
            true,
        ),
        ("SELECT * FROM t WHERE k IN ('ab', '', 'a');", true),
        // 5000000000 wraps to 705032704 in 32 bits: it must not match.
        ("SELECT * FROM n WHERE k = 5000000000;", true),
        ("SELECT * FROM n WHERE k IN (5000000000);", true),
        (
            "SELECT * FROM n WHERE k IN (5000000000, -2147483648);",
            true,
        ),
        ("SELECT v FROM n WHERE k = -2147483648;", true),
        ("SELECT * FROM per_minute WHERE WINDOWSTART = 0;", false),
    ];
    for (sql, fast) in cases {
        both(&ctx, &m, &cache, sql, fast).await;
    }
    let a = both(
        &ctx,
        &m,
        &cache,
        "SELECT * FROM per_minute WHERE user = 'a';",
        true,
    )
    .await;
    assert_eq!(a.matches("\"[\\\"a\\\"").count(), 3, "{a}");
}
