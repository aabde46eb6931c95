//! ksqlDB's functions over JSON text: `EXTRACTJSONFIELD`,
//! `IS_JSON_STRING`, `JSON_ARRAY_CONTAINS`, `JSON_ARRAY_LENGTH`,
//! `JSON_CONCAT`, `JSON_ITEMS`, `JSON_KEYS` and `JSON_RECORDS`, and
//! `TO_JSON_STRING`, which writes any value as the JSON format does.
//!
//! Text that is not JSON gives null (false for the predicates). JSON
//! results are written compactly (`{"a":1}`); extracted strings are their
//! content, not quoted JSON.

use datafusion::arrow::array::{MapBuilder, MapFieldNames, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use serde_json::Value;
use sluice_engine::format::json::write_value;
use sluice_engine::schema::SqlType;
use std::sync::Arc;

use super::rowwise::{Arg, RowKind, expect, string, text};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JsonFn {
    ExtractJsonField,
    IsJsonString,
    JsonArrayContains,
    JsonConcat,
    JsonItems,
    JsonKeys,
    JsonRecords,
    JsonArrayLength,
    ToJsonString,
}

impl JsonFn {
    pub const ALL: [JsonFn; 9] = [
        JsonFn::JsonArrayLength,
        JsonFn::ToJsonString,
        JsonFn::ExtractJsonField,
        JsonFn::IsJsonString,
        JsonFn::JsonArrayContains,
        JsonFn::JsonConcat,
        JsonFn::JsonItems,
        JsonFn::JsonKeys,
        JsonFn::JsonRecords,
    ];
}

fn parse(s: &str) -> Option<Value> {
    serde_json::from_str(s).ok()
}

/// A JSON value as ksqlDB hands it back: strings as their content,
/// anything else as compact JSON.
fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl RowKind for JsonFn {
    fn name(&self) -> &'static str {
        match self {
            JsonFn::ExtractJsonField => "extractjsonfield",
            JsonFn::IsJsonString => "is_json_string",
            JsonFn::JsonArrayContains => "json_array_contains",
            JsonFn::JsonConcat => "json_concat",
            JsonFn::JsonItems => "json_items",
            JsonFn::JsonKeys => "json_keys",
            JsonFn::JsonRecords => "json_records",
            JsonFn::JsonArrayLength => "json_array_length",
            JsonFn::ToJsonString => "to_json_string",
        }
    }

    fn coerce(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        use Arg::*;
        match self {
            JsonFn::ExtractJsonField => expect(self.name(), args, &[&[Str, Str]]),
            JsonFn::JsonArrayContains => expect(self.name(), args, &[&[Str, Any]]),
            JsonFn::ToJsonString => expect(self.name(), args, &[&[Any]]),
            JsonFn::JsonConcat => {
                let shape = vec![Str; args.len().max(1)];
                expect(self.name(), args, &[&shape])
            }
            _ => expect(self.name(), args, &[&[Str]]),
        }
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(match self {
            JsonFn::IsJsonString | JsonFn::JsonArrayContains => DataType::Boolean,
            JsonFn::JsonArrayLength => DataType::Int32,
            JsonFn::JsonItems | JsonFn::JsonKeys => DataType::new_list(DataType::Utf8, true),
            JsonFn::JsonRecords => {
                SqlType::Map(Box::new(SqlType::String), Box::new(SqlType::String)).to_arrow()
            }
            _ => DataType::Utf8,
        })
    }

    fn call(&self, args: &[ScalarValue], _: &DataType) -> Result<ScalarValue> {
        let first = args.first().and_then(text);
        let json = || first.and_then(parse);
        let strings = |items: Vec<String>| {
            let values: Vec<ScalarValue> = items
                .into_iter()
                .map(|s| ScalarValue::Utf8(Some(s)))
                .collect();
            ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Utf8))
        };
        Ok(match self {
            JsonFn::JsonArrayLength => match json() {
                Some(Value::Array(items)) => ScalarValue::Int32(i32::try_from(items.len()).ok()),
                _ => ScalarValue::Null,
            },
            JsonFn::ToJsonString => {
                let Some(value) = args.first() else {
                    return Ok(ScalarValue::Null);
                };
                let array = value.to_array()?;
                let mut out = String::new();
                if let Err(e) = write_value(&mut out, array.as_ref(), 0) {
                    return datafusion::common::exec_err!("TO_JSON_STRING: {e}");
                }
                string(out)
            }
            JsonFn::ExtractJsonField => {
                let (Some(doc), Some(path)) = (json(), args.get(1).and_then(text)) else {
                    return Ok(ScalarValue::Null);
                };
                match extract(&doc, path) {
                    Some(Value::Null) | None => ScalarValue::Null,
                    Some(v) => string(as_text(v)),
                }
            }
            JsonFn::IsJsonString => ScalarValue::Boolean(Some(json().is_some())),
            JsonFn::JsonArrayContains => {
                let found = match (json(), args.get(1)) {
                    (Some(Value::Array(items)), Some(wanted)) => {
                        items.iter().any(|item| json_equals(item, wanted))
                    }
                    _ => false,
                };
                ScalarValue::Boolean(Some(found))
            }
            JsonFn::JsonConcat => {
                let docs: Option<Vec<Value>> =
                    args.iter().map(|a| text(a).and_then(parse)).collect();
                match docs {
                    Some(docs) => string(concat(docs).to_string()),
                    None => ScalarValue::Null,
                }
            }
            JsonFn::JsonItems => match json() {
                Some(Value::Array(items)) => strings(items.iter().map(Value::to_string).collect()),
                _ => ScalarValue::Null,
            },
            JsonFn::JsonKeys => match json() {
                Some(Value::Object(o)) => strings(o.keys().cloned().collect()),
                _ => ScalarValue::Null,
            },
            JsonFn::JsonRecords => match json() {
                Some(Value::Object(o)) => {
                    let names = MapFieldNames {
                        entry: "entries".into(),
                        key: "key".into(),
                        value: "value".into(),
                    };
                    let mut builder =
                        MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
                    for (k, v) in &o {
                        builder.keys().append_value(k);
                        builder.values().append_value(as_text(v));
                    }
                    builder.append(true)?;
                    ScalarValue::Map(Arc::new(builder.finish()))
                }
                _ => ScalarValue::Null,
            },
        })
    }
}

/// Objects merge (later keys win); anything else concatenates as arrays,
/// a non-array counting as a one-element array.
fn concat(docs: Vec<Value>) -> Value {
    if docs.iter().all(Value::is_object) {
        let mut merged = serde_json::Map::new();
        for doc in docs {
            if let Value::Object(o) = doc {
                merged.extend(o);
            }
        }
        return Value::Object(merged);
    }
    let mut items = Vec::new();
    for doc in docs {
        match doc {
            Value::Array(a) => items.extend(a),
            other => items.push(other),
        }
    }
    Value::Array(items)
}

/// Whether a JSON array item equals a SQL value.
fn json_equals(item: &Value, wanted: &ScalarValue) -> bool {
    match wanted {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => item.as_str() == Some(s),
        ScalarValue::Boolean(Some(b)) => item.as_bool() == Some(*b),
        ScalarValue::Int32(Some(i)) => item.as_i64() == Some(i64::from(*i)),
        ScalarValue::Int64(Some(i)) => item.as_i64() == Some(*i),
        ScalarValue::Float64(Some(f)) => item.as_f64() == Some(*f),
        v if v.is_null() => item.is_null(),
        _ => false,
    }
}

/// Follows a JSON path (`$.a.b`, `$.a[0]`, `$['a b']`) into `doc`.
fn extract<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let mut rest = path.trim().strip_prefix('$')?;
    let mut current = doc;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            current = current.get(&after[..end])?;
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inner = after[..end].trim();
            current = match inner.strip_prefix(['\'', '"']) {
                Some(quoted) => current.get(quoted.strip_suffix(['\'', '"'])?)?,
                None => current.get(inner.parse::<usize>().ok()?)?,
            };
            rest = &after[end + 1..];
        } else {
            return None;
        }
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_reach_fields_and_items() {
        let doc: Value =
            serde_json::from_str(r#"{"a": {"b": [1, {"c": "x"}]}, "d e": 2}"#).unwrap();
        assert_eq!(
            extract(&doc, "$.a.b[1].c"),
            Some(&Value::String("x".into()))
        );
        assert_eq!(extract(&doc, "$['d e']"), Some(&Value::from(2)));
        assert_eq!(extract(&doc, "$.missing"), None);
    }

    #[test]
    fn concat_merges_or_appends() {
        let v = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert_eq!(
            concat(vec![v(r#"{"a":1}"#), v(r#"{"b":2}"#)]).to_string(),
            r#"{"a":1,"b":2}"#
        );
        assert_eq!(
            concat(vec![v("[1,2]"), v(r#"{"a":1}"#)]).to_string(),
            r#"[1,2,{"a":1}]"#
        );
        assert_eq!(
            concat(vec![v("null"), v("null")]).to_string(),
            "[null,null]"
        );
    }
}
