//! Splitting shell input into statements and telling what each one is.
//!
//! The shell does its own splitting (not the server's) because it must
//! know where a statement ends before sending anything: a line without a
//! closing `;` waits for more input, and `RUN SCRIPT`, `SET`, `UNSET`,
//! `EXIT` never leave the shell.

/// Input cut at the semicolons that end statements.
#[derive(Debug, PartialEq, Eq)]
pub struct Split {
    /// Complete statements, trimmed, each with its `;`.
    pub statements: Vec<String>,
    /// Text after the last `;`, not yet a statement (may be blank).
    pub rest: String,
}

/// Cuts `text` at every `;` outside quotes and comments. Single quotes
/// (`''` escapes one), double quotes and backticks quote; `--` comments
/// run to the end of the line and `/* */` comments may span lines.
pub fn split(text: &str) -> Split {
    let mut statements = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' | '"' | '`' => {
                // A doubled quote inside is an escaped one: the loop just
                // closes and reopens the quoted text.
                for (_, d) in chars.by_ref() {
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek().is_some_and(|(_, d)| *d == '-') => {
                for (_, d) in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek().is_some_and(|(_, d)| *d == '*') => {
                chars.next();
                let mut star = false;
                for (_, d) in chars.by_ref() {
                    if star && d == '/' {
                        break;
                    }
                    star = d == '*';
                }
            }
            ';' => {
                let statement = text[start..=i].trim();
                if !is_blank(&statement[..statement.len() - 1]) {
                    statements.push(statement.to_string());
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    Split {
        statements,
        rest: text[start..].to_string(),
    }
}

/// True when `text` holds nothing but whitespace and comments.
pub fn is_blank(text: &str) -> bool {
    strip_comments(text).trim().is_empty()
}

/// `text` without its leading whitespace and comments.
fn strip_comments(mut text: &str) -> &str {
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix("--") {
            text = rest.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(rest) = text.strip_prefix("/*") {
            text = rest.split_once("*/").map_or("", |(_, after)| after);
        } else {
            return text;
        }
    }
}

/// What the shell does with one statement.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// `SELECT ...`: a query over `/query-stream`; `push` when it has
    /// `EMIT CHANGES` or `EMIT FINAL`, so it streams until stopped.
    Query { push: bool },
    /// `PRINT 'topic' ...`: a topic's records over `/query`.
    Print,
    /// `RUN SCRIPT 'file'`.
    RunScript(String),
    /// `SET 'name' = 'value'`: a property sent with every later request.
    Set(String, String),
    /// `UNSET 'name'`.
    Unset(String),
    /// `EXIT` or `QUIT`.
    Exit,
    /// Anything else goes to `/ksql`.
    Ksql,
}

/// The words of a statement, uppercased outside quotes, with quoted text
/// kept whole (quotes included) so `SET 'a'='b'` splits into its parts.
fn words(statement: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut chars = statement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' | '`' => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
                let mut quoted = String::from(c);
                while let Some(d) = chars.next() {
                    quoted.push(d);
                    if d == c {
                        // '' inside single quotes is one quote character.
                        if chars.peek() == Some(&c) {
                            chars.next();
                            continue;
                        }
                        break;
                    }
                }
                out.push(quoted);
            }
            c if c.is_alphanumeric() || c == '_' || c == '.' => {
                word.extend(c.to_uppercase());
            }
            c => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
                if !c.is_whitespace() {
                    out.push(c.to_string());
                }
            }
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// The text inside a quoted word: `'it''s'` is `it's`.
pub fn unquote(word: &str) -> Option<String> {
    let quote = word.chars().next()?;
    if !matches!(quote, '\'' | '"' | '`') || word.len() < 2 || !word.ends_with(quote) {
        return None;
    }
    let inner = &word[1..word.len() - 1];
    let doubled: String = [quote, quote].iter().collect();
    Some(inner.replace(&doubled, &quote.to_string()))
}

/// Tells what `statement` (comments allowed, `;` optional) asks for.
pub fn classify(statement: &str) -> Result<Action, String> {
    let text = strip_comments(statement);
    let text = text.trim_end().trim_end_matches(';');
    let w = words(text);
    let first = w.first().map(String::as_str).unwrap_or_default();
    match first {
        "SELECT" => {
            let push = w
                .windows(2)
                .any(|p| p[0] == "EMIT" && (p[1] == "CHANGES" || p[1] == "FINAL"));
            Ok(Action::Query { push })
        }
        "EXIT" | "QUIT" if w.len() == 1 => Ok(Action::Exit),
        "PRINT" => Ok(Action::Print),
        "RUN" if w.get(1).is_some_and(|s| s == "SCRIPT") => match w.as_slice() {
            [_, _, file] => unquote(file).map(Action::RunScript).ok_or_else(|| {
                "RUN SCRIPT takes a quoted file name: RUN SCRIPT 'file.sql';".into()
            }),
            _ => Err("RUN SCRIPT takes one quoted file name: RUN SCRIPT 'file.sql';".into()),
        },
        "SET" => match w.as_slice() {
            [_, name, eq, value] if eq == "=" => match (unquote(name), unquote(value)) {
                (Some(name), Some(value)) => Ok(Action::Set(name, value)),
                _ => Err("SET takes quoted text: SET 'name' = 'value';".into()),
            },
            _ => Err("SET takes a quoted name and value: SET 'name' = 'value';".into()),
        },
        "UNSET" => match w.as_slice() {
            [_, name] => unquote(name)
                .map(Action::Unset)
                .ok_or_else(|| "UNSET takes a quoted name: UNSET 'name';".into()),
            _ => Err("UNSET takes one quoted name: UNSET 'name';".into()),
        },
        _ => Ok(Action::Ksql),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_semicolons_outside_quotes_and_comments() {
        let s = split("SELECT 'a;b' FROM x; -- c;d\nSHOW `t;`; /* e; */ DESCRIBE y");
        assert_eq!(
            s.statements,
            vec!["SELECT 'a;b' FROM x;", "-- c;d\nSHOW `t;`;"]
        );
        assert_eq!(s.rest, " /* e; */ DESCRIBE y");
        assert!(!is_blank(&s.rest));
        assert!(is_blank(" -- only a comment\n /* and this */ "));
    }

    #[test]
    fn escaped_quotes_do_not_end_strings() {
        let s = split("SELECT 'it''s; fine' FROM x;;");
        assert_eq!(s.statements, vec!["SELECT 'it''s; fine' FROM x;"]);
        assert_eq!(s.rest, "");
    }

    #[test]
    fn an_unclosed_comment_or_string_waits_for_more() {
        assert!(split("SELECT 'a; FROM x;").statements.is_empty());
        assert!(split("/* SHOW TABLES;").statements.is_empty());
    }

    #[test]
    fn classifies_statements() {
        assert_eq!(
            classify("select * from t emit changes;"),
            Ok(Action::Query { push: true })
        );
        assert_eq!(
            classify("-- c\nSELECT * FROM t WHERE k = 'EMIT CHANGES';"),
            Ok(Action::Query { push: false })
        );
        assert_eq!(
            classify("run script '/tmp/it''s.sql';"),
            Ok(Action::RunScript("/tmp/it's.sql".into()))
        );
        assert_eq!(
            classify("SET 'auto.offset.reset' = 'earliest';"),
            Ok(Action::Set("auto.offset.reset".into(), "earliest".into()))
        );
        assert_eq!(
            classify("unset 'auto.offset.reset'"),
            Ok(Action::Unset("auto.offset.reset".into()))
        );
        assert!(classify("SET auto = 1;").is_err());
        assert!(classify("RUN SCRIPT;").is_err());
        assert_eq!(classify("exit"), Ok(Action::Exit));
        assert_eq!(classify("print 'topic' limit 2;"), Ok(Action::Print));
        assert_eq!(classify("SHOW TABLES;"), Ok(Action::Ksql));
    }
}
