//! `sluice conformance`: runs ksqlDB's query-validation tests on the
//! embedded backend and reports pass rates per category and file.
//!
//! Every case runs on a fresh engine; only cases that ksqlDB itself
//! disables, or that need a Schema Registry format, are skipped. With
//! `--rqtt` it runs the REST tests ([`rqtt`]) through the HTTP routes.

mod case;
mod compare;
mod qtt;
mod report;
mod rqtt;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use self::case::{Outcome, run_case};
use self::report::{CaseResult, Report};

#[derive(Debug, clap::Args)]
pub struct ConformanceArgs {
    /// QTT files or folders of them.
    #[arg(long = "qtt", required_unless_present = "rqtt", num_args = 1..)]
    pub qtt: Vec<PathBuf>,
    /// RQTT (REST) files or folders of them, run instead of QTT files.
    #[arg(long = "rqtt", num_args = 1..)]
    pub rqtt: Vec<PathBuf>,
    /// categories.json mapping categories to file names; defaults to the
    /// one beside the first folder given.
    #[arg(long)]
    pub categories: Option<PathBuf>,
    /// Where to write the JSON report.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Only run cases whose file or name contains this text.
    #[arg(long)]
    pub filter: Option<String>,
    /// Fail (exit 1) when fewer cases than this pass.
    #[arg(long)]
    pub require_passed: Option<u64>,
    /// Print every failing case with its reason.
    #[arg(long)]
    pub verbose: bool,
}

fn load_categories(args: &ConformanceArgs) -> Result<BTreeMap<String, String>> {
    let path = match &args.categories {
        Some(p) => Some(p.clone()),
        None => args
            .qtt
            .first()
            .and_then(|p| {
                if p.is_dir() {
                    p.parent().map(|d| d.join("categories.json"))
                } else {
                    None
                }
            })
            .filter(|p| p.exists()),
    };
    let mut by_file = BTreeMap::new();
    if let Some(path) = path {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let doc: BTreeMap<String, Vec<String>> =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        for (category, files) in doc {
            for f in files {
                by_file.insert(format!("{f}.json"), category.clone());
            }
        }
    }
    Ok(by_file)
}

/// One runnable case of either kind.
enum AnyCase {
    Qtt(qtt::Case),
    Rest(rqtt::RestCase),
}

impl AnyCase {
    fn case(&self) -> &qtt::Case {
        match self {
            AnyCase::Qtt(c) => c,
            AnyCase::Rest(r) => &r.case,
        }
    }
}

pub fn run(args: &ConformanceArgs) -> Result<()> {
    let categories = load_categories(args)?;
    let rest = !args.rqtt.is_empty();
    let files = qtt::collect_files(if rest { &args.rqtt } else { &args.qtt })?;
    if files.is_empty() {
        bail!("no test files found in {:?}", args.qtt);
    }
    // The REST routes are async; one runtime serves every case.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let started = Instant::now();
    // A panicking case is reported as a failure with its message; the
    // default hook's backtrace would drown the table.
    std::panic::set_hook(Box::new(|_| {}));
    let mut results = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let cases: Vec<AnyCase> = if rest {
            rqtt::load(file)?.into_iter().map(AnyCase::Rest).collect()
        } else {
            qtt::load_cases(file)?
                .into_iter()
                .map(AnyCase::Qtt)
                .collect()
        };
        let cases: Vec<_> = cases
            .into_iter()
            .filter(|c| {
                let c = c.case();
                args.filter
                    .as_ref()
                    .is_none_or(|f| c.file.contains(f.as_str()) || c.name.contains(f.as_str()))
            })
            .collect();
        if cases.is_empty() {
            continue;
        }
        let mut passed = 0;
        for any in &cases {
            let case = any.case();
            let run_one = || match any {
                AnyCase::Qtt(c) => run_case(c),
                AnyCase::Rest(r) => rqtt::run_case(r, &rt),
            };
            let outcome =
                catch_unwind(AssertUnwindSafe(run_one)).unwrap_or_else(|p| Outcome::Failed {
                    reason: format!("panic: {}", panic_text(&p)),
                });
            let (status, reason) = match outcome {
                Outcome::Passed { reason } => {
                    passed += 1;
                    ("passed", reason)
                }
                Outcome::Failed { reason } => ("failed", reason),
                Outcome::Skipped { reason } => ("skipped", reason),
            };
            if args.verbose && status == "failed" {
                eprintln!("FAIL {} :: {} :: {}", case.file, case.name, reason);
            }
            results.push(CaseResult {
                file: case.file.clone(),
                name: case.name.clone(),
                status,
                reason,
            });
        }
        eprintln!(
            "[{}/{}] {:<50} {passed}/{} passed ({:.1}s)",
            i + 1,
            files.len(),
            file.file_name()
                .map(|f| f.to_string_lossy())
                .unwrap_or_default(),
            cases.len(),
            started.elapsed().as_secs_f64()
        );
    }
    let report = Report::build(results, |file| {
        categories
            .get(file)
            .cloned()
            .unwrap_or_else(|| "uncategorized".into())
    });
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    report.print();
    if let Some(floor) = args.require_passed
        && report.total.passed < floor
    {
        bail!(
            "{} cases pass, below the floor of {floor}",
            report.total.passed
        );
    }
    Ok(())
}

fn panic_text(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown".into())
}
