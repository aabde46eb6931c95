//! Loading ksqlDB query-validation test (QTT) files and expanding them into
//! cases: one per `format` × `config` entry.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

/// One runnable case.
#[derive(Debug, Clone)]
pub struct Case {
    pub file: String,
    pub name: String,
    pub statements: Vec<String>,
    pub inputs: Vec<Value>,
    pub outputs: Vec<Value>,
    pub expected_exception: Option<Value>,
    pub properties: Vec<(String, String)>,
    pub topics: Vec<Value>,
    pub post: Option<Value>,
    pub enabled: bool,
}

/// Every `.json` file under the given files and folders, sorted.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            for entry in
                std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?
            {
                let p = entry?.path();
                if p.extension().is_some_and(|e| e == "json") {
                    files.push(p);
                }
            }
        } else {
            files.push(path.clone());
        }
    }
    files.sort();
    Ok(files)
}

/// ksqlDB's files allow `//` comments, on their own lines or after
/// content; JSON does not. `//` inside strings (URLs) is kept.
pub(super) fn strip_line_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let (mut in_string, mut escaped) = (false, false);
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        if c == '/' && chars.peek() == Some(&'/') {
            for skipped in chars.by_ref() {
                if skipped == '\n' {
                    out.push('\n');
                    break;
                }
            }
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

pub fn load_cases(path: &Path) -> Result<Vec<Case>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Value = serde_json::from_str(&strip_line_comments(&text))
        .with_context(|| format!("parsing {}", path.display()))?;
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cases = Vec::new();
    for test in doc
        .get("tests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = test
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("unnamed")
            .to_string();
        let strings = |key: &str| -> Vec<String> {
            test.get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let formats = strings("format");
        let configs = strings("config");
        let formats: Vec<Option<String>> = if formats.is_empty() {
            vec![None]
        } else {
            formats.into_iter().map(Some).collect()
        };
        let configs: Vec<Option<String>> = if configs.is_empty() {
            vec![None]
        } else {
            configs.into_iter().map(Some).collect()
        };
        let properties: Vec<(String, String)> = test
            .get("properties")
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str()
                                .map(String::from)
                                .unwrap_or_else(|| v.to_string()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let array = |key: &str| {
            test.get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        for format in &formats {
            for config in &configs {
                let mut case_name = name.clone();
                let statements = strings("statements")
                    .into_iter()
                    .map(|s| {
                        let mut s = s;
                        if let Some(f) = format {
                            s = s.replace("{FORMAT}", f);
                        }
                        if let Some(c) = config {
                            s = s.replace("{CONFIG}", c);
                        }
                        s
                    })
                    .collect();
                for part in [format, config].into_iter().flatten() {
                    case_name.push_str(" - ");
                    case_name.push_str(part);
                }
                cases.push(Case {
                    file: file.clone(),
                    name: case_name,
                    statements,
                    inputs: array("inputs"),
                    outputs: array("outputs"),
                    expected_exception: test.get("expectedException").cloned(),
                    properties: properties.clone(),
                    topics: array("topics"),
                    post: test.get("post").cloned(),
                    enabled: test.get("enabled").and_then(Value::as_bool).unwrap_or(true),
                });
            }
        }
    }
    Ok(cases)
}

/// The Schema Registry formats a case uses, if any: those cases may be
/// skipped, Sluice has no Schema Registry.
pub fn schema_registry_format(case: &Case) -> Option<String> {
    const SR: [&str; 3] = ["AVRO", "PROTOBUF", "JSON_SR"];
    for s in &case.statements {
        let upper = s.to_uppercase();
        for (i, _) in upper.match_indices("FORMAT") {
            let rest = upper[i + "FORMAT".len()..].trim_start();
            if let Some(rest) = rest.strip_prefix('=') {
                let value = rest.trim_start().trim_start_matches('\'');
                let word: String = value
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if SR.contains(&word.as_str()) {
                    return Some(word);
                }
            }
        }
    }
    for topic in &case.topics {
        for key in ["format", "keyFormat", "valueFormat"] {
            if let Some(f) = topic.get(key).and_then(Value::as_str)
                && SR.contains(&f.to_uppercase().as_str())
            {
                return Some(f.to_uppercase());
            }
        }
    }
    None
}
