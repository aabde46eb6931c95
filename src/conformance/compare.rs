//! Matching actual records against expected ones, with the tolerances of
//! ksqlDB's runner: field names exact or upper-cased, doubles within 1e-6.

use serde_json::Value;

/// Why `actual` differs from `expected`, or `None` when they match.
pub fn mismatch(expected: &Value, actual: &Value) -> Option<String> {
    match (expected, actual) {
        (Value::Null, Value::Null) => None,
        (Value::Number(e), Value::Number(a)) => {
            let (Some(e), Some(a)) = (e.as_f64(), a.as_f64()) else {
                return Some(format!("expected {expected}, got {actual}"));
            };
            let tolerance = 1e-6 * e.abs().max(1.0);
            if (e - a).abs() <= tolerance {
                None
            } else {
                Some(format!("expected {expected}, got {actual}"))
            }
        }
        (Value::Object(e), Value::Object(a)) => {
            if e.len() != a.len() {
                return Some(format!("expected {expected}, got {actual}"));
            }
            for (name, ev) in e {
                let av = a.get(name).or_else(|| a.get(&name.to_uppercase()));
                match av {
                    None => return Some(format!("missing field {name} in {actual}")),
                    Some(av) => {
                        if let Some(why) = mismatch(ev, av) {
                            return Some(format!("field {name}: {why}"));
                        }
                    }
                }
            }
            None
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Some(format!("expected {expected}, got {actual}"));
            }
            e.iter().zip(a).find_map(|(e, a)| mismatch(e, a))
        }
        _ if expected == actual => None,
        _ => Some(format!("expected {expected}, got {actual}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tolerates_case_and_float_noise_only() {
        assert!(mismatch(&json!({"count": 1.0000000001}), &json!({"COUNT": 1.0})).is_none());
        assert!(mismatch(&json!({"A": 1}), &json!({"A": 2})).is_some());
        assert!(mismatch(&json!({"A": 1}), &json!({"A": 1, "B": 2})).is_some());
        assert!(mismatch(&json!("1"), &json!(1)).is_some());
    }
}
