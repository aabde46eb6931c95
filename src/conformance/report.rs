//! Counting results per category and file, printing the tables and
//! writing the JSON report.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
}

impl Counts {
    fn add(&mut self, status: &str) {
        match status {
            "passed" => self.passed += 1,
            "failed" => self.failed += 1,
            _ => self.skipped += 1,
        }
    }

    pub fn rate(&self) -> f64 {
        let run = self.passed + self.failed;
        if run == 0 {
            0.0
        } else {
            100.0 * self.passed as f64 / run as f64
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CaseResult {
    pub file: String,
    pub name: String,
    pub status: &'static str,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub total: Counts,
    pub categories: BTreeMap<String, Counts>,
    pub files: BTreeMap<String, Counts>,
    pub cases: Vec<CaseResult>,
}

impl Report {
    /// `category_of` maps a file name to its category.
    pub fn build(cases: Vec<CaseResult>, category_of: impl Fn(&str) -> String) -> Report {
        let mut total = Counts::default();
        let mut categories: BTreeMap<String, Counts> = BTreeMap::new();
        let mut files: BTreeMap<String, Counts> = BTreeMap::new();
        for c in &cases {
            total.add(c.status);
            categories
                .entry(category_of(&c.file))
                .or_default()
                .add(c.status);
            files.entry(c.file.clone()).or_default().add(c.status);
        }
        Report {
            total,
            categories,
            files,
            cases,
        }
    }

    pub fn print(&self) {
        print_table("file", &self.files);
        println!();
        print_table("category", &self.categories);
        let rejected =
            |c: &&CaseResult| c.status == "passed" && c.reason.starts_with("rejected as expected");
        let rejections = self.cases.iter().filter(rejected).count();
        let same_message = self
            .cases
            .iter()
            .filter(rejected)
            .filter(|c| c.reason.ends_with("same message"))
            .count();
        let unsupported = self
            .cases
            .iter()
            .filter(rejected)
            .filter(|c| c.reason.contains("not supported yet"))
            .count();
        println!();
        println!(
            "of the passed cases, {rejections} are statements rejected as ksqlDB rejects them: {same_message} with \
             ksqlDB's message, {unsupported} only because Sluice does not support a feature they use yet"
        );
        let t = self.total;
        println!(
            "conformance: {}/{} cases pass ({:.1}%)",
            t.passed,
            t.passed + t.failed,
            t.rate()
        );
    }
}

/// One row of counts per name, under a header naming the first column.
fn print_table(first_column: &str, rows: &BTreeMap<String, Counts>) {
    println!(
        "{first_column:<60} {:>7} {:>7} {:>7} {:>7}",
        "passed", "failed", "skipped", "pass %"
    );
    for (name, c) in rows {
        println!(
            "{name:<60} {:>7} {:>7} {:>7} {:>6.1}%",
            c.passed,
            c.failed,
            c.skipped,
            c.rate()
        );
    }
}
