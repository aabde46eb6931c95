//! What each function of the [`super::FunctionRegistry`] is for, in words:
//! signature, description and an example call, one [`FunctionDoc`] per
//! name `SHOW FUNCTIONS` lists. `DESCRIBE FUNCTION` and the generated
//! reference (`sluice docs functions`, `docs/functions.md`) read it; a
//! test checks it names exactly the registry's functions.
//!
//! Examples are expressions over the columns of [`EXAMPLE_STREAM`]; the
//! reference generator runs each one and prints what the engine answers.

/// The documentation of one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionDoc {
    /// The name, upper case, as `SHOW FUNCTIONS` lists it.
    pub name: &'static str,
    /// Argument and result types; `[..]` marks optional arguments.
    pub signature: &'static str,
    pub description: &'static str,
    /// An expression over [`EXAMPLE_STREAM`]'s columns.
    pub example: &'static str,
}

/// The stream examples read: `ID INT KEY, GRP STRING, N INT, X DOUBLE,
/// Y DOUBLE, S STRING, TAGS ARRAY<INT>, TS BIGINT`.
pub const EXAMPLE_STREAM: &str = "CREATE STREAM examples (id INT KEY, grp STRING, n INT, \
x DOUBLE, y DOUBLE, s STRING, tags ARRAY<INT>, ts BIGINT) \
WITH (kafka_topic='examples', value_format='JSON', partitions=1);";

/// The rows of [`EXAMPLE_STREAM`]; scalar examples read the first,
/// aggregates all three (grouped by `GRP`, which is the same for all).
pub const EXAMPLE_ROWS: &[&str] = &[
    "INSERT INTO examples (id, grp, n, x, y, s, tags, ts) VALUES (1, 'g', 3, 1.5, 2.0, 'red', ARRAY[1, 2], 1700000000000);",
    "INSERT INTO examples (id, grp, n, x, y, s, tags, ts) VALUES (2, 'g', 5, 2.5, 4.5, 'blue', ARRAY[3], 1700000060000);",
    "INSERT INTO examples (id, grp, n, x, y, s, tags, ts) VALUES (3, 'g', 3, 4.0, 7.5, 'red', ARRAY[4, 5], 1700000120000);",
];

const fn doc(
    name: &'static str,
    signature: &'static str,
    description: &'static str,
    example: &'static str,
) -> FunctionDoc {
    FunctionDoc {
        name,
        signature,
        description,
        example,
    }
}

/// Every function's documentation, by name.
pub const FUNCTION_DOCS: &[FunctionDoc] = &[
    doc(
        "ABS",
        "ABS(x numeric) -> same type",
        "Absolute value.",
        "ABS(-2.5)",
    ),
    doc(
        "ACOS",
        "ACOS(x DOUBLE) -> DOUBLE",
        "Arc cosine, in radians.",
        "ACOS(0.5)",
    ),
    doc(
        "APPROX_PERCENTILE",
        "APPROX_PERCENTILE(x numeric, p DOUBLE) -> DOUBLE",
        "Aggregate: an approximate percentile (0 <= p <= 1) of a group's values, from a t-digest. Not in ksqlDB; meant for latency percentiles over windows.",
        "APPROX_PERCENTILE(x, 0.5)",
    ),
    doc(
        "ARRAY_CONCAT",
        "ARRAY_CONCAT(a ARRAY<T>, b ARRAY<T>) -> ARRAY<T>",
        "The elements of `a` followed by those of `b`; null if both are null.",
        "ARRAY_CONCAT(tags, ARRAY[9])",
    ),
    doc(
        "ARRAY_CONTAINS",
        "ARRAY_CONTAINS(a ARRAY<T>, v T) -> BOOLEAN",
        "Whether `a` has an element equal to `v`.",
        "ARRAY_CONTAINS(tags, 2)",
    ),
    doc(
        "ARRAY_DISTINCT",
        "ARRAY_DISTINCT(a ARRAY<T>) -> ARRAY<T>",
        "The elements of `a` without repeats, first occurrences in order.",
        "ARRAY_DISTINCT(ARRAY[1, 1, 2])",
    ),
    doc(
        "ARRAY_EXCEPT",
        "ARRAY_EXCEPT(a ARRAY<T>, b ARRAY<T>) -> ARRAY<T>",
        "The distinct elements of `a` that are not in `b`.",
        "ARRAY_EXCEPT(ARRAY[1, 2, 3], tags)",
    ),
    doc(
        "ARRAY_INTERSECT",
        "ARRAY_INTERSECT(a ARRAY<T>, b ARRAY<T>) -> ARRAY<T>",
        "The distinct elements found in both arrays, in `a`'s order.",
        "ARRAY_INTERSECT(ARRAY[2, 3], tags)",
    ),
    doc(
        "ARRAY_JOIN",
        "ARRAY_JOIN(a ARRAY<T> [, delimiter STRING]) -> STRING",
        "The elements as text joined by `delimiter` (a comma by default).",
        "ARRAY_JOIN(tags, '|')",
    ),
    doc(
        "ARRAY_LENGTH",
        "ARRAY_LENGTH(a ARRAY<T>) -> INT",
        "How many elements `a` has.",
        "ARRAY_LENGTH(tags)",
    ),
    doc(
        "ARRAY_MAX",
        "ARRAY_MAX(a ARRAY<T>) -> T",
        "The largest non-null element.",
        "ARRAY_MAX(tags)",
    ),
    doc(
        "ARRAY_MIN",
        "ARRAY_MIN(a ARRAY<T>) -> T",
        "The smallest non-null element.",
        "ARRAY_MIN(tags)",
    ),
    doc(
        "ARRAY_REMOVE",
        "ARRAY_REMOVE(a ARRAY<T>, v T) -> ARRAY<T>",
        "`a` without the elements equal to `v`.",
        "ARRAY_REMOVE(tags, 1)",
    ),
    doc(
        "ARRAY_SORT",
        "ARRAY_SORT(a ARRAY<T> [, direction STRING]) -> ARRAY<T>",
        "The elements sorted, `'ASC'` (default) or `'DESC'`; nulls last.",
        "ARRAY_SORT(ARRAY[3, 1, 2], 'DESC')",
    ),
    doc(
        "ARRAY_UNION",
        "ARRAY_UNION(a ARRAY<T>, b ARRAY<T>) -> ARRAY<T>",
        "The distinct elements of both arrays.",
        "ARRAY_UNION(tags, ARRAY[2, 7])",
    ),
    doc(
        "ASIN",
        "ASIN(x DOUBLE) -> DOUBLE",
        "Arc sine, in radians.",
        "ASIN(0.5)",
    ),
    doc(
        "AS_MAP",
        "AS_MAP(keys ARRAY<STRING>, values ARRAY<T>) -> MAP<STRING, T>",
        "A map pairing the keys with the values at the same positions.",
        "AS_MAP(ARRAY['a', 'b'], ARRAY[1, 2])",
    ),
    doc(
        "AS_VALUE",
        "AS_VALUE(x) -> type of x",
        "Copies a key column into the value of a query's output.",
        "AS_VALUE(id)",
    ),
    doc(
        "ATAN",
        "ATAN(x DOUBLE) -> DOUBLE",
        "Arc tangent, in radians.",
        "ATAN(1.0)",
    ),
    doc(
        "ATAN2",
        "ATAN2(y DOUBLE, x DOUBLE) -> DOUBLE",
        "The angle of the point (x, y) from the x axis, in radians.",
        "ATAN2(1.0, 1.0)",
    ),
    doc(
        "ATTR",
        "ATTR(x) -> type of x",
        "Aggregate: the group's value when all its rows agree on it, null otherwise.",
        "ATTR(grp)",
    ),
    doc(
        "AVG",
        "AVG(x numeric) -> DOUBLE",
        "Aggregate: the mean of the non-null values.",
        "AVG(n)",
    ),
    doc(
        "BIGINT_FROM_BYTES",
        "BIGINT_FROM_BYTES(b BYTES [, byte_order STRING]) -> BIGINT",
        "Reads 8 bytes as a signed integer, `'BIG_ENDIAN'` (default) or `'LITTLE_ENDIAN'`.",
        "BIGINT_FROM_BYTES(TO_BYTES('AAAAAAAAAAE=', 'base64'))",
    ),
    doc(
        "CBRT",
        "CBRT(x DOUBLE) -> DOUBLE",
        "Cube root.",
        "CBRT(27.0)",
    ),
    doc(
        "CEIL",
        "CEIL(x numeric) -> same type",
        "The smallest whole number not below `x`.",
        "CEIL(x)",
    ),
    doc(
        "CHR",
        "CHR(code INT | STRING) -> STRING",
        "The character of a Unicode code point, given as a number or as `'\\uXXXX'`.",
        "CHR(75)",
    ),
    doc(
        "COALESCE",
        "COALESCE(a, b, ...) -> common type",
        "The first non-null argument.",
        "COALESCE(NULL, s, 'none')",
    ),
    doc(
        "COLLECT_LIST",
        "COLLECT_LIST(x) -> ARRAY",
        "Aggregate: the group's values in arrival order, up to `ksql.functions.collect_list.limit` (1000).",
        "COLLECT_LIST(s)",
    ),
    doc(
        "COLLECT_SET",
        "COLLECT_SET(x) -> ARRAY",
        "Aggregate: the group's distinct values in first-arrival order, up to `ksql.functions.collect_set.limit` (1000).",
        "COLLECT_SET(s)",
    ),
    doc(
        "CONCAT",
        "CONCAT(a STRING, b STRING, ...) -> STRING",
        "The arguments joined; nulls count as empty.",
        "CONCAT(s, '-', grp)",
    ),
    doc(
        "CONCAT_WS",
        "CONCAT_WS(separator STRING, a STRING, ...) -> STRING",
        "The non-null arguments joined by `separator`.",
        "CONCAT_WS(', ', s, grp)",
    ),
    doc(
        "CONVERT_TZ",
        "CONVERT_TZ(ts TIMESTAMP, from STRING, to STRING) -> TIMESTAMP",
        "Reads `ts` as wall-clock time in zone `from` and gives the same instant's wall-clock time in zone `to`.",
        "CONVERT_TZ(FROM_UNIXTIME(ts), 'UTC', 'America/New_York')",
    ),
    doc(
        "CORRELATION",
        "CORRELATION(x DOUBLE, y DOUBLE) -> DOUBLE",
        "Aggregate: Pearson's correlation coefficient of the (x, y) pairs.",
        "CORRELATION(x, y)",
    ),
    doc(
        "COS",
        "COS(x DOUBLE) -> DOUBLE",
        "Cosine of an angle in radians.",
        "COS(0.0)",
    ),
    doc(
        "COSH",
        "COSH(x DOUBLE) -> DOUBLE",
        "Hyperbolic cosine.",
        "COSH(1.0)",
    ),
    doc(
        "COT",
        "COT(x DOUBLE) -> DOUBLE",
        "Cotangent of an angle in radians.",
        "COT(1.0)",
    ),
    doc(
        "COUNT",
        "COUNT(*) | COUNT(x) -> BIGINT",
        "Aggregate: the number of rows, or of non-null values of `x`.",
        "COUNT(*)",
    ),
    doc(
        "COUNT_DISTINCT",
        "COUNT_DISTINCT(x) -> BIGINT",
        "Aggregate: how many distinct non-null values the group has seen (exact; ksqlDB estimates).",
        "COUNT_DISTINCT(n)",
    ),
    doc(
        "CUBE_EXPLODE",
        "CUBE_EXPLODE(a ARRAY<T>) -> ARRAY<T>, one row per combination",
        "Table function: one output row for every way of replacing some elements of `a` by null.",
        "CUBE_EXPLODE(ARRAY[s, grp])",
    ),
    doc(
        "DATEADD",
        "DATEADD(unit, amount INT, d DATE) -> DATE",
        "`d` moved by `amount` units (DAYS, MONTHS, YEARS...).",
        "DATEADD(DAYS, 3, FROM_DAYS(19000))",
    ),
    doc(
        "DATESUB",
        "DATESUB(unit, amount INT, d DATE) -> DATE",
        "`d` moved back by `amount` units.",
        "DATESUB(DAYS, 3, FROM_DAYS(19000))",
    ),
    doc(
        "DATETOSTRING",
        "DATETOSTRING(days INT, pattern STRING) -> STRING",
        "Formats a day number (days since 1970-01-01) with a Java date pattern. Deprecated in ksqlDB for FORMAT_DATE.",
        "DATETOSTRING(19000, 'yyyy-MM-dd')",
    ),
    doc(
        "DEGREES",
        "DEGREES(x DOUBLE) -> DOUBLE",
        "Radians to degrees.",
        "DEGREES(PI())",
    ),
    doc(
        "DOUBLE_FROM_BYTES",
        "DOUBLE_FROM_BYTES(b BYTES [, byte_order STRING]) -> DOUBLE",
        "Reads 8 bytes as an IEEE 754 double.",
        "DOUBLE_FROM_BYTES(TO_BYTES('QAkh+1RELRg=', 'base64'))",
    ),
    doc(
        "EARLIEST_BY_OFFSET",
        "EARLIEST_BY_OFFSET(x [, n INT] [, ignore_nulls BOOLEAN]) -> type of x, or ARRAY",
        "Aggregate: the first value the group received, or the first `n` as an array; nulls are skipped unless `ignore_nulls` is false.",
        "EARLIEST_BY_OFFSET(s)",
    ),
    doc(
        "ELT",
        "ELT(n INT, a STRING, b STRING, ...) -> STRING",
        "The `n`th string argument (from 1); null when out of range.",
        "ELT(2, 'a', 'b', 'c')",
    ),
    doc(
        "ENCODE",
        "ENCODE(s STRING, from STRING, to STRING) -> STRING",
        "Re-encodes text between `'hex'`, `'utf8'`, `'ascii'` and `'base64'`.",
        "ENCODE(s, 'utf8', 'hex')",
    ),
    doc(
        "ENTRIES",
        "ENTRIES(m MAP<STRING, T>, sorted BOOLEAN) -> ARRAY<STRUCT<K STRING, V T>>",
        "The map's entries as structs, sorted by key when `sorted` is true.",
        "ENTRIES(MAP('b' := 2, 'a' := 1), true)",
    ),
    doc(
        "EXP",
        "EXP(x DOUBLE) -> DOUBLE",
        "e raised to `x`.",
        "EXP(1.0)",
    ),
    doc(
        "EXPLODE",
        "EXPLODE(a ARRAY<T>) -> T, one row per element",
        "Table function: one output row per element of `a`.",
        "EXPLODE(tags)",
    ),
    doc(
        "EXTRACTJSONFIELD",
        "EXTRACTJSONFIELD(json STRING, path STRING) -> STRING",
        "The value at a JSONPath (`$.a.b[0]`) of a JSON text, as text.",
        "EXTRACTJSONFIELD('{\"a\": {\"b\": 7}}', '$.a.b')",
    ),
    doc(
        "FIELD",
        "FIELD(s STRING, a STRING, b STRING, ...) -> INT",
        "The position (from 1) of `s` among the other arguments, 0 when absent.",
        "FIELD(s, 'blue', 'red')",
    ),
    doc(
        "FLOOR",
        "FLOOR(x numeric) -> same type",
        "The largest whole number not above `x`.",
        "FLOOR(x)",
    ),
    doc(
        "FORMAT_DATE",
        "FORMAT_DATE(d DATE, pattern STRING) -> STRING",
        "Formats a date with a Java date pattern.",
        "FORMAT_DATE(FROM_DAYS(19000), 'dd MMM yyyy')",
    ),
    doc(
        "FORMAT_TIME",
        "FORMAT_TIME(t TIME, pattern STRING) -> STRING",
        "Formats a time of day with a Java pattern.",
        "FORMAT_TIME(PARSE_TIME('13:45', 'HH:mm'), 'h:mm a')",
    ),
    doc(
        "FORMAT_TIMESTAMP",
        "FORMAT_TIMESTAMP(ts TIMESTAMP, pattern STRING [, zone STRING]) -> STRING",
        "Formats a timestamp with a Java pattern, in UTC or the given zone.",
        "FORMAT_TIMESTAMP(FROM_UNIXTIME(ts), 'yyyy-MM-dd HH:mm:ss')",
    ),
    doc(
        "FROM_BYTES",
        "FROM_BYTES(b BYTES, encoding STRING) -> STRING",
        "Bytes as text in `'hex'`, `'utf8'`, `'ascii'` or `'base64'`.",
        "FROM_BYTES(TO_BYTES(s, 'utf8'), 'hex')",
    ),
    doc(
        "FROM_DAYS",
        "FROM_DAYS(days INT) -> DATE",
        "The date `days` days after 1970-01-01.",
        "FROM_DAYS(19000)",
    ),
    doc(
        "FROM_UNIXTIME",
        "FROM_UNIXTIME(ms BIGINT) -> TIMESTAMP",
        "The timestamp `ms` milliseconds after the epoch.",
        "FROM_UNIXTIME(ts)",
    ),
    doc(
        "GENERATE_SERIES",
        "GENERATE_SERIES(start, end [, step]) -> ARRAY",
        "The numbers from `start` to `end` inclusive, `step` apart (1 by default).",
        "GENERATE_SERIES(1, 9, 3)",
    ),
    doc(
        "GEO_DISTANCE",
        "GEO_DISTANCE(lat1, lon1, lat2, lon2 DOUBLE [, unit STRING]) -> DOUBLE",
        "Great-circle distance between two points in degrees, in `'KM'` (default) or `'MI'`.",
        "GEO_DISTANCE(52.52, 13.40, 48.86, 2.35)",
    ),
    doc(
        "GREATEST",
        "GREATEST(a, b, ...) -> common type",
        "The largest non-null argument.",
        "GREATEST(n, 4, 2)",
    ),
    doc(
        "HISTOGRAM",
        "HISTOGRAM(s STRING) -> MAP<STRING, BIGINT>",
        "Aggregate: how many times each distinct value occurred (up to 1000 values).",
        "HISTOGRAM(s)",
    ),
    doc(
        "IFNULL",
        "IFNULL(x, fallback) -> common type",
        "`x`, or `fallback` when `x` is null.",
        "IFNULL(NULL, s)",
    ),
    doc(
        "INITCAP",
        "INITCAP(s STRING) -> STRING",
        "Each word with an upper-case first letter and the rest lower case.",
        "INITCAP('hello wORLD')",
    ),
    doc(
        "INSTR",
        "INSTR(s STRING, sub STRING [, from INT [, nth INT]]) -> INT",
        "The position (from 1) of the `nth` occurrence of `sub` in `s` searching from `from`; 0 when not found; a negative `from` searches backwards from the end.",
        "INSTR('banana', 'an', 1, 2)",
    ),
    doc(
        "INT_FROM_BYTES",
        "INT_FROM_BYTES(b BYTES [, byte_order STRING]) -> INT",
        "Reads 4 bytes as a signed integer.",
        "INT_FROM_BYTES(TO_BYTES('AAAAKg==', 'base64'))",
    ),
    doc(
        "IS_JSON_STRING",
        "IS_JSON_STRING(s STRING) -> BOOLEAN",
        "Whether `s` parses as JSON.",
        "IS_JSON_STRING('[1, 2]')",
    ),
    doc(
        "JSON_ARRAY_CONTAINS",
        "JSON_ARRAY_CONTAINS(json STRING, v) -> BOOLEAN",
        "Whether a JSON array text has an element equal to `v`.",
        "JSON_ARRAY_CONTAINS('[1, 2, 3]', 2)",
    ),
    doc(
        "JSON_ARRAY_LENGTH",
        "JSON_ARRAY_LENGTH(json STRING) -> INT",
        "The number of elements of a JSON array text; null if it is not one.",
        "JSON_ARRAY_LENGTH('[1, 2, 3]')",
    ),
    doc(
        "JSON_CONCAT",
        "JSON_CONCAT(a STRING, b STRING, ...) -> STRING",
        "Merges JSON objects (later keys win) or concatenates JSON arrays.",
        "JSON_CONCAT('{\"a\": 1}', '{\"b\": 2}')",
    ),
    doc(
        "JSON_ITEMS",
        "JSON_ITEMS(json STRING) -> ARRAY<STRING>",
        "The elements of a JSON array text, each as JSON text.",
        "JSON_ITEMS('[{\"a\": 1}, 2]')",
    ),
    doc(
        "JSON_KEYS",
        "JSON_KEYS(json STRING) -> ARRAY<STRING>",
        "The keys of a JSON object text.",
        "JSON_KEYS('{\"a\": 1, \"b\": 2}')",
    ),
    doc(
        "JSON_RECORDS",
        "JSON_RECORDS(json STRING) -> MAP<STRING, STRING>",
        "The entries of a JSON object text, values as JSON text.",
        "JSON_RECORDS('{\"a\": [1], \"b\": \"x\"}')",
    ),
    doc(
        "LATEST_BY_OFFSET",
        "LATEST_BY_OFFSET(x [, n INT] [, ignore_nulls BOOLEAN]) -> type of x, or ARRAY",
        "Aggregate: the last value the group received, or the last `n` as an array; nulls are skipped unless `ignore_nulls` is false.",
        "LATEST_BY_OFFSET(s)",
    ),
    doc(
        "LCASE",
        "LCASE(s STRING) -> STRING",
        "Lower case.",
        "LCASE('Sluice')",
    ),
    doc(
        "LEAST",
        "LEAST(a, b, ...) -> common type",
        "The smallest non-null argument.",
        "LEAST(n, 4, 2)",
    ),
    doc(
        "LEN",
        "LEN(s STRING) -> INT",
        "The number of characters.",
        "LEN(s)",
    ),
    doc(
        "LN",
        "LN(x DOUBLE) -> DOUBLE",
        "Natural logarithm.",
        "LN(EXP(2.0))",
    ),
    doc(
        "LOG",
        "LOG([base DOUBLE,] x DOUBLE) -> DOUBLE",
        "Logarithm of `x`, natural or in `base`.",
        "LOG(10.0, 1000.0)",
    ),
    doc(
        "LPAD",
        "LPAD(s STRING, length INT, padding STRING) -> STRING",
        "`s` padded on the left with `padding` to `length` characters (or cut to it); lengths over 1,000,000 fail (null, logged).",
        "LPAD(s, 6, '*')",
    ),
    doc(
        "LTRIM",
        "LTRIM(s STRING) -> STRING",
        "`s` without leading whitespace.",
        "LTRIM('  a ')",
    ),
    doc(
        "MAP_KEYS",
        "MAP_KEYS(m MAP<K, V>) -> ARRAY<K>",
        "The keys of a map.",
        "MAP_KEYS(MAP('a' := 1, 'b' := 2))",
    ),
    doc(
        "MAP_UNION",
        "MAP_UNION(a MAP<K, V>, b MAP<K, V>) -> MAP<K, V>",
        "Both maps' entries; `b` wins on equal keys.",
        "MAP_UNION(MAP('a' := 1), MAP('a' := 2, 'b' := 3))",
    ),
    doc(
        "MAP_VALUES",
        "MAP_VALUES(m MAP<K, V>) -> ARRAY<V>",
        "The values of a map.",
        "MAP_VALUES(MAP('a' := 1, 'b' := 2))",
    ),
    doc(
        "MASK",
        "MASK(s STRING [, upper STRING, lower STRING, digit STRING, other STRING]) -> STRING",
        "Replaces upper-case letters by `X`, lower-case by `x`, digits by `n` and others by `-`, or by the given characters (null keeps them).",
        "MASK('Ab-12')",
    ),
    doc(
        "MASK_KEEP_LEFT",
        "MASK_KEEP_LEFT(s STRING, n INT [, upper, lower, digit, other]) -> STRING",
        "Like MASK but keeps the first `n` characters.",
        "MASK_KEEP_LEFT('Ab-12', 2)",
    ),
    doc(
        "MASK_KEEP_RIGHT",
        "MASK_KEEP_RIGHT(s STRING, n INT [, upper, lower, digit, other]) -> STRING",
        "Like MASK but keeps the last `n` characters.",
        "MASK_KEEP_RIGHT('Ab-12', 2)",
    ),
    doc(
        "MASK_LEFT",
        "MASK_LEFT(s STRING, n INT [, upper, lower, digit, other]) -> STRING",
        "Masks only the first `n` characters.",
        "MASK_LEFT('Ab-12', 2)",
    ),
    doc(
        "MASK_RIGHT",
        "MASK_RIGHT(s STRING, n INT [, upper, lower, digit, other]) -> STRING",
        "Masks only the last `n` characters.",
        "MASK_RIGHT('Ab-12', 2)",
    ),
    doc(
        "MAX",
        "MAX(x) -> type of x",
        "Aggregate: the largest non-null value.",
        "MAX(n)",
    ),
    doc(
        "MD5",
        "MD5(s STRING) -> STRING",
        "The MD5 digest of `s`, as 32 hex digits.",
        "MD5(s)",
    ),
    doc(
        "MIN",
        "MIN(x) -> type of x",
        "Aggregate: the smallest non-null value.",
        "MIN(x)",
    ),
    doc(
        "NULLIF",
        "NULLIF(a, b) -> type of a",
        "Null when `a` equals `b`, else `a`.",
        "NULLIF(s, 'red')",
    ),
    doc(
        "PARSE_DATE",
        "PARSE_DATE(s STRING, pattern STRING) -> DATE",
        "Reads a date written with a Java date pattern.",
        "PARSE_DATE('2024-02-29', 'yyyy-MM-dd')",
    ),
    doc(
        "PARSE_TIME",
        "PARSE_TIME(s STRING, pattern STRING) -> TIME",
        "Reads a time of day written with a Java pattern.",
        "PARSE_TIME('07:30:15', 'HH:mm:ss')",
    ),
    doc(
        "PARSE_TIMESTAMP",
        "PARSE_TIMESTAMP(s STRING, pattern STRING [, zone STRING]) -> TIMESTAMP",
        "Reads a timestamp written with a Java pattern, in UTC or the given zone.",
        "PARSE_TIMESTAMP('2024-02-29 12:00', 'yyyy-MM-dd HH:mm')",
    ),
    doc("PI", "PI() -> DOUBLE", "The number pi.", "PI()"),
    doc(
        "POWER",
        "POWER(base DOUBLE, exponent DOUBLE) -> DOUBLE",
        "`base` raised to `exponent`.",
        "POWER(2.0, 10.0)",
    ),
    doc(
        "RADIANS",
        "RADIANS(x DOUBLE) -> DOUBLE",
        "Degrees to radians.",
        "RADIANS(180.0)",
    ),
    doc(
        "RANDOM",
        "RANDOM() -> DOUBLE",
        "A pseudo-random number in [0, 1), new for every row.",
        "RANDOM()",
    ),
    doc(
        "REGEXP_EXTRACT",
        "REGEXP_EXTRACT(pattern STRING, s STRING [, group INT]) -> STRING",
        "The first match of a Java regular expression in `s`, or of its capture `group`; null without a match.",
        "REGEXP_EXTRACT('(\\w)(\\w+)', 'hello world', 2)",
    ),
    doc(
        "REGEXP_EXTRACT_ALL",
        "REGEXP_EXTRACT_ALL(pattern STRING, s STRING [, group INT]) -> ARRAY<STRING>",
        "Every match of a regular expression in `s` (or its capture `group`).",
        "REGEXP_EXTRACT_ALL('\\d+', 'a1b22c333')",
    ),
    doc(
        "REGEXP_REPLACE",
        "REGEXP_REPLACE(s STRING, pattern STRING, replacement STRING) -> STRING",
        "`s` with every match of the regular expression replaced.",
        "REGEXP_REPLACE('a1b22', '\\d+', '#')",
    ),
    doc(
        "REGEXP_SPLIT_TO_ARRAY",
        "REGEXP_SPLIT_TO_ARRAY(s STRING, pattern STRING) -> ARRAY<STRING>",
        "`s` split around the matches of a regular expression.",
        "REGEXP_SPLIT_TO_ARRAY('a1b22c', '\\d+')",
    ),
    doc(
        "REPLACE",
        "REPLACE(s STRING, old STRING, new STRING) -> STRING",
        "`s` with every occurrence of `old` replaced by `new`.",
        "REPLACE(s, 'e', 'E')",
    ),
    doc(
        "ROUND",
        "ROUND(x numeric [, digits INT]) -> same type, or BIGINT without digits",
        "`x` rounded half up to `digits` decimal places (0 by default).",
        "ROUND(2.567, 2)",
    ),
    doc(
        "RPAD",
        "RPAD(s STRING, length INT, padding STRING) -> STRING",
        "`s` padded on the right with `padding` to `length` characters (or cut to it); lengths over 1,000,000 fail (null, logged).",
        "RPAD(s, 6, '.')",
    ),
    doc(
        "RTRIM",
        "RTRIM(s STRING) -> STRING",
        "`s` without trailing whitespace.",
        "RTRIM(' a  ')",
    ),
    doc(
        "SIGN",
        "SIGN(x numeric) -> INT",
        "-1, 0 or 1 as `x` is negative, zero or positive.",
        "SIGN(-4.2)",
    ),
    doc(
        "SIN",
        "SIN(x DOUBLE) -> DOUBLE",
        "Sine of an angle in radians.",
        "SIN(PI() / 2)",
    ),
    doc(
        "SINH",
        "SINH(x DOUBLE) -> DOUBLE",
        "Hyperbolic sine.",
        "SINH(1.0)",
    ),
    doc(
        "SLICE",
        "SLICE(a ARRAY<T>, from INT, to INT) -> ARRAY<T>",
        "The elements from position `from` to `to` inclusive, counting from 1.",
        "SLICE(ARRAY[1, 2, 3, 4], 2, 3)",
    ),
    doc(
        "SPLIT",
        "SPLIT(s STRING, delimiter STRING) -> ARRAY<STRING>",
        "`s` split around each occurrence of `delimiter`; an empty delimiter splits into characters.",
        "SPLIT('a,b,,c', ',')",
    ),
    doc(
        "SPLIT_TO_MAP",
        "SPLIT_TO_MAP(s STRING, entry_delimiter STRING, kv_delimiter STRING) -> MAP<STRING, STRING>",
        "Reads `k=v` pairs into a map.",
        "SPLIT_TO_MAP('a=1;b=2', ';', '=')",
    ),
    doc(
        "SQRT",
        "SQRT(x DOUBLE) -> DOUBLE",
        "Square root.",
        "SQRT(16.0)",
    ),
    doc(
        "STDDEV_SAMP",
        "STDDEV_SAMP(x numeric) -> DOUBLE",
        "Aggregate: the sample variance (ksqlDB's STDDEV_SAMP returns the variance, without the square root; Sluice matches it).",
        "STDDEV_SAMP(x)",
    ),
    doc(
        "STDDEV_SAMPLE",
        "STDDEV_SAMPLE(x numeric) -> DOUBLE",
        "Aggregate: the sample standard deviation.",
        "STDDEV_SAMPLE(x)",
    ),
    doc(
        "STRINGTODATE",
        "STRINGTODATE(s STRING, pattern STRING) -> INT",
        "Reads a date with a Java pattern into a day number. Deprecated in ksqlDB for PARSE_DATE.",
        "STRINGTODATE('2024-02-29', 'yyyy-MM-dd')",
    ),
    doc(
        "STRINGTOTIMESTAMP",
        "STRINGTOTIMESTAMP(s STRING, pattern STRING [, zone STRING]) -> BIGINT",
        "Reads a timestamp with a Java pattern into epoch milliseconds. Deprecated in ksqlDB for PARSE_TIMESTAMP.",
        "STRINGTOTIMESTAMP('2024-02-29 12:00', 'yyyy-MM-dd HH:mm')",
    ),
    doc(
        "SUBSTRING",
        "SUBSTRING(s STRING, from INT [, length INT]) -> STRING",
        "Part of `s` from position `from` (1-based; negative counts from the end), `length` characters or to the end.",
        "SUBSTRING('streaming', 3, 4)",
    ),
    doc(
        "SUM",
        "SUM(x numeric) -> same type",
        "Aggregate: the sum of the non-null values.",
        "SUM(n)",
    ),
    doc(
        "SUM_LIST",
        "SUM_LIST(a ARRAY<numeric>) -> element type",
        "Aggregate: the sum of every element of every row's array.",
        "SUM_LIST(tags)",
    ),
    doc(
        "TAN",
        "TAN(x DOUBLE) -> DOUBLE",
        "Tangent of an angle in radians.",
        "TAN(0.5)",
    ),
    doc(
        "TANH",
        "TANH(x DOUBLE) -> DOUBLE",
        "Hyperbolic tangent.",
        "TANH(0.5)",
    ),
    doc(
        "TIMEADD",
        "TIMEADD(unit, amount INT, t TIME) -> TIME",
        "A time of day moved by `amount` units, wrapping at midnight.",
        "TIMEADD(HOURS, 3, PARSE_TIME('22:00', 'HH:mm'))",
    ),
    doc(
        "TIMESTAMPADD",
        "TIMESTAMPADD(unit, amount INT, ts TIMESTAMP) -> TIMESTAMP",
        "`ts` moved by `amount` units (MILLISECONDS ... DAYS).",
        "TIMESTAMPADD(MINUTES, 90, FROM_UNIXTIME(ts))",
    ),
    doc(
        "TIMESTAMPSUB",
        "TIMESTAMPSUB(unit, amount INT, ts TIMESTAMP) -> TIMESTAMP",
        "`ts` moved back by `amount` units.",
        "TIMESTAMPSUB(DAYS, 1, FROM_UNIXTIME(ts))",
    ),
    doc(
        "TIMESTAMPTOSTRING",
        "TIMESTAMPTOSTRING(ms BIGINT, pattern STRING [, zone STRING]) -> STRING",
        "Formats epoch milliseconds with a Java pattern, in UTC or the given zone.",
        "TIMESTAMPTOSTRING(ts, 'yyyy-MM-dd HH:mm:ss', 'Europe/Paris')",
    ),
    doc(
        "TIMESUB",
        "TIMESUB(unit, amount INT, t TIME) -> TIME",
        "A time of day moved back by `amount` units, wrapping at midnight.",
        "TIMESUB(MINUTES, 45, PARSE_TIME('00:30', 'HH:mm'))",
    ),
    doc(
        "TOPK",
        "TOPK(x, [other columns...,] k INT) -> ARRAY",
        "Aggregate: the `k` largest values, largest first; with other columns, structs of the sort value and those columns.",
        "TOPK(n, 2)",
    ),
    doc(
        "TOPKDISTINCT",
        "TOPKDISTINCT(x, k INT) -> ARRAY",
        "Aggregate: the `k` largest distinct values, largest first.",
        "TOPKDISTINCT(n, 2)",
    ),
    doc(
        "TO_BYTES",
        "TO_BYTES(s STRING, encoding STRING) -> BYTES",
        "Text in `'hex'`, `'utf8'`, `'ascii'` or `'base64'` as bytes.",
        "TO_BYTES('cafe', 'hex')",
    ),
    doc(
        "TO_JSON_STRING",
        "TO_JSON_STRING(x) -> STRING",
        "Any value as JSON text.",
        "TO_JSON_STRING(tags)",
    ),
    doc(
        "TRIM",
        "TRIM(s STRING) -> STRING",
        "`s` without leading and trailing whitespace.",
        "TRIM('  a  ')",
    ),
    doc(
        "TRUNC",
        "TRUNC(x numeric [, digits INT]) -> same type, or BIGINT without digits",
        "`x` cut towards zero to `digits` decimal places (0 by default).",
        "TRUNC(-2.567, 1)",
    ),
    doc(
        "UCASE",
        "UCASE(s STRING) -> STRING",
        "Upper case.",
        "UCASE(s)",
    ),
    doc(
        "UNIX_DATE",
        "UNIX_DATE([d DATE]) -> INT",
        "Days since 1970-01-01 of `d`, or of today.",
        "UNIX_DATE(FROM_DAYS(19000))",
    ),
    doc(
        "UNIX_TIMESTAMP",
        "UNIX_TIMESTAMP([ts TIMESTAMP]) -> BIGINT",
        "Epoch milliseconds of `ts`, or of now.",
        "UNIX_TIMESTAMP(FROM_UNIXTIME(ts))",
    ),
    doc(
        "URL_DECODE_PARAM",
        "URL_DECODE_PARAM(s STRING) -> STRING",
        "Decodes `%xx` escapes and `+` of a URL query value.",
        "URL_DECODE_PARAM('a%20b%2Bc')",
    ),
    doc(
        "URL_ENCODE_PARAM",
        "URL_ENCODE_PARAM(s STRING) -> STRING",
        "Escapes text for a URL query value.",
        "URL_ENCODE_PARAM('a b&c')",
    ),
    doc(
        "URL_EXTRACT_FRAGMENT",
        "URL_EXTRACT_FRAGMENT(url STRING) -> STRING",
        "The part of a URL after `#`.",
        "URL_EXTRACT_FRAGMENT('https://x.io/p?q=1#top')",
    ),
    doc(
        "URL_EXTRACT_HOST",
        "URL_EXTRACT_HOST(url STRING) -> STRING",
        "The host of a URL.",
        "URL_EXTRACT_HOST('https://x.io:8080/p?q=1#top')",
    ),
    doc(
        "URL_EXTRACT_PARAMETER",
        "URL_EXTRACT_PARAMETER(url STRING, name STRING) -> STRING",
        "The decoded value of a query parameter.",
        "URL_EXTRACT_PARAMETER('https://x.io/p?q=a%20b&r=2', 'q')",
    ),
    doc(
        "URL_EXTRACT_PATH",
        "URL_EXTRACT_PATH(url STRING) -> STRING",
        "The path of a URL.",
        "URL_EXTRACT_PATH('https://x.io/a/b?q=1')",
    ),
    doc(
        "URL_EXTRACT_PORT",
        "URL_EXTRACT_PORT(url STRING) -> INT",
        "The explicit port of a URL; null without one.",
        "URL_EXTRACT_PORT('https://x.io:8080/p')",
    ),
    doc(
        "URL_EXTRACT_PROTOCOL",
        "URL_EXTRACT_PROTOCOL(url STRING) -> STRING",
        "The scheme of a URL.",
        "URL_EXTRACT_PROTOCOL('https://x.io/p')",
    ),
    doc(
        "URL_EXTRACT_QUERY",
        "URL_EXTRACT_QUERY(url STRING) -> STRING",
        "The query string of a URL, without `?`.",
        "URL_EXTRACT_QUERY('https://x.io/p?q=1&r=2')",
    ),
    doc(
        "UUID",
        "UUID() -> STRING",
        "A random version 4 UUID, new for every row.",
        "UUID()",
    ),
];

/// The documentation of a function, by name in any case.
pub fn function_doc(name: &str) -> Option<&'static FunctionDoc> {
    FUNCTION_DOCS
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(name))
}

/// Whether a function's result differs between calls with equal
/// arguments, so its example's result cannot be printed.
pub fn varies(name: &str) -> bool {
    matches!(name, "RANDOM" | "UUID")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_are_sorted_and_unique() {
        for pair in FUNCTION_DOCS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} before {}",
                pair[0].name,
                pair[1].name
            );
        }
    }

    #[test]
    fn every_registered_function_is_documented_and_nothing_else() {
        let registry = crate::functions::FunctionRegistry::new(
            &datafusion::execution::SessionStateBuilder::new()
                .with_default_features()
                .build(),
        );
        let names: Vec<String> = registry.names().into_iter().map(|(n, _)| n).collect();
        let documented: Vec<String> = FUNCTION_DOCS.iter().map(|d| d.name.to_string()).collect();
        assert_eq!(names, documented);
    }
}
