//! `sluice docs functions`: the function reference (`docs/functions.md`)
//! generated from the engine itself. The names come from `SHOW FUNCTIONS`,
//! the words from `sluice_sql::functions::docs`, and every example's result
//! from running it as a persistent query on embedded topics, so the
//! reference cannot drift from the code. `tests/function_docs.rs` checks
//! the checked-in file is what this prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use sluice_connectors::EmbeddedTopics;
use sluice_sql::functions::FunctionKind;
use sluice_sql::functions::docs::{EXAMPLE_ROWS, EXAMPLE_STREAM, function_doc, varies};
use sluice_sql::{KsqlContext, StatementResult};

#[derive(Debug, Args)]
pub struct DocsArgs {
    #[command(subcommand)]
    what: DocsCommand,
}

#[derive(Debug, Subcommand)]
enum DocsCommand {
    /// The function reference, as Markdown.
    Functions {
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn run(args: DocsArgs) -> Result<()> {
    match args.what {
        DocsCommand::Functions { out } => {
            let text = functions_markdown()?;
            match out {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display())),
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }
    }
}

/// What an example gave: its rows' `RESULT` values as JSON.
type Outcomes = BTreeMap<String, Vec<String>>;

/// Runs every function's example over the example stream.
fn run_examples(
    ctx: &KsqlContext,
    topics: &EmbeddedTopics,
    names: &[(String, FunctionKind)],
) -> Result<Outcomes> {
    ctx.execute(EXAMPLE_STREAM)
        .map_err(|e| anyhow::anyhow!("the example stream: {}", e.error))?;
    let mut sinks = Vec::new();
    for (i, (name, kind)) in names.iter().enumerate() {
        let Some(doc) = function_doc(name) else {
            continue;
        };
        let sql = match kind {
            FunctionKind::Aggregate => format!(
                "CREATE TABLE doc_example_{i} AS SELECT grp, {} AS result FROM examples GROUP BY grp EMIT CHANGES;",
                doc.example
            ),
            FunctionKind::Scalar => format!(
                "CREATE STREAM doc_example_{i} AS SELECT id, {} AS result FROM examples WHERE id = 1 EMIT CHANGES;",
                doc.example
            ),
        };
        let results = ctx.execute(&sql).map_err(|e| {
            anyhow::anyhow!("the example of {name}, `{}`: {}", doc.example, e.error)
        })?;
        for r in results {
            if let StatementResult::QueryStarted { sink, .. } = r
                && let Some(source) = ctx.source(&sink)
            {
                sinks.push((name.clone(), *kind, source.topic.clone()));
            }
        }
    }
    for row in EXAMPLE_ROWS {
        ctx.execute(row)
            .map_err(|e| anyhow::anyhow!("an example row: {}", e.error))?;
    }
    ctx.runtime().run_until_idle();
    let mut outcomes = Outcomes::new();
    for (name, kind, topic) in sinks {
        let records = topics
            .records(&topic)
            .with_context(|| format!("reading the output of {name}'s example"))?;
        let mut values = Vec::new();
        for r in records {
            let value: serde_json::Value = match r.record.value.as_deref() {
                Some(bytes) => serde_json::from_slice(bytes)
                    .with_context(|| format!("the output of {name}'s example"))?,
                None => serde_json::Value::Null,
            };
            values.push(value["RESULT"].to_string());
        }
        // A table's last update is the group's final value.
        if kind == FunctionKind::Aggregate && values.len() > 1 {
            values = values.split_off(values.len() - 1);
        }
        outcomes.insert(name, values);
    }
    Ok(outcomes)
}

/// The reference, from `SHOW FUNCTIONS` and the examples' results.
pub fn functions_markdown() -> Result<String> {
    let topics = Arc::new(EmbeddedTopics::new());
    let ctx = KsqlContext::with_backend(topics.clone(), 64);
    let listed = ctx
        .execute("SHOW FUNCTIONS;")
        .map_err(|e| anyhow::anyhow!("SHOW FUNCTIONS: {}", e.error))?;
    let Some(StatementResult::Functions(names)) = listed.into_iter().next() else {
        bail!("SHOW FUNCTIONS listed no functions");
    };
    let missing: Vec<&str> = names
        .iter()
        .filter(|(n, _)| function_doc(n).is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    if !missing.is_empty() {
        bail!(
            "functions without documentation in sql/src/functions/docs.rs: {}",
            missing.join(", ")
        );
    }
    let outcomes = run_examples(&ctx, &topics, &names)?;

    let mut md = String::new();
    md.push_str("# Function reference\n\n");
    md.push_str(
        "<!-- Generated by `sluice docs functions --out docs/functions.md` from the \
         function registry (sql/src/functions/docs.rs); do not edit by hand. -->\n\n",
    );
    let _ = writeln!(
        md,
        "Every function `SHOW FUNCTIONS` lists ({} of them), with its signature, what it does \
         and an example. Each example's result is what Sluice answered when this page was \
         generated: the example ran as a persistent query over this stream and rows (scalar \
         examples read the first row, aggregates all three, grouped by `grp`). Results are shown \
         as the JSON value format writes them: DATE as days since 1970-01-01, TIME as \
         milliseconds of the day, TIMESTAMP as epoch milliseconds, BYTES as base64.\n",
        names.len()
    );
    md.push_str("```sql\n");
    md.push_str(EXAMPLE_STREAM);
    md.push('\n');
    for row in EXAMPLE_ROWS {
        md.push_str(row);
        md.push('\n');
    }
    md.push_str("```\n\n");
    md.push_str(
        "Names are case-insensitive. `DESCRIBE FUNCTION name;` answers for one function, with \
         the same description.\n\n",
    );
    for (title, wanted) in [
        ("Scalar functions", FunctionKind::Scalar),
        ("Aggregate functions", FunctionKind::Aggregate),
    ] {
        let group: Vec<&String> = names
            .iter()
            .filter(|(_, k)| *k == wanted)
            .map(|(n, _)| n)
            .collect();
        let _ = writeln!(md, "## {title}\n");
        let index: Vec<String> = group
            .iter()
            .map(|n| format!("[{n}](#{})", n.to_lowercase()))
            .collect();
        let _ = writeln!(md, "{}\n", index.join(" · "));
        for name in group {
            let Some(doc) = function_doc(name) else {
                continue;
            };
            let results = outcomes.get(name.as_str()).cloned().unwrap_or_default();
            let shown = if varies(name) {
                "(differs on every call)".to_string()
            } else if results.is_empty() {
                "(no row)".to_string()
            } else {
                results
                    .iter()
                    .map(|r| format!("`{r}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(md, "### {name}\n");
            let _ = writeln!(md, "`{}`\n", doc.signature);
            let _ = writeln!(md, "{}\n", doc.description);
            let _ = writeln!(md, "Example: `{}` gives {shown}\n", doc.example);
        }
    }
    Ok(md)
}
