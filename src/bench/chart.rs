//! Charts of a benchmark run, drawn by the benchmark itself as SVG (text
//! stays text, so they render crisply in BENCHMARKS.md on any viewer):
//! throughput against the limit per scenario, and latency percentiles.

use serde_json::Value;

const WIDTH: f64 = 760.0;
const ROW: f64 = 34.0;
const LEFT: f64 = 170.0;
const RIGHT: f64 = 90.0;
const SLUICE: &str = "#3563e9";
const LIMIT: &str = "#c9d3e6";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn header(height: f64, title: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="Helvetica, Arial, sans-serif" font-size="12"><rect width="100%" height="100%" fill="#ffffff"/><text x="16" y="24" font-size="15" font-weight="bold" fill="#1b2333">{}</text>"##,
        escape(title)
    )
}

/// One bar pair per throughput result: Sluice, and its limit behind it.
pub fn throughput(results: &[Value], title: &str) -> String {
    let rows: Vec<&Value> = results
        .iter()
        .filter(|r| r["latency_ms"].is_null())
        .collect();
    let height = 60.0 + ROW * rows.len() as f64 + 30.0;
    let max = rows
        .iter()
        .flat_map(|r| {
            [
                r["events_per_sec"].as_f64(),
                r["limit_events_per_sec"].as_f64(),
            ]
        })
        .flatten()
        .fold(1.0, f64::max);
    let scale = (WIDTH - LEFT - RIGHT) / max;
    let mut svg = header(height, title);
    for (i, r) in rows.iter().enumerate() {
        let y = 50.0 + ROW * i as f64;
        let rate = r["events_per_sec"].as_f64().unwrap_or(0.0);
        let limit = r["limit_events_per_sec"].as_f64().unwrap_or(0.0);
        let name = r["scenario"].as_str().unwrap_or("?");
        svg += &format!(
            r##"<text x="{}" y="{}" text-anchor="end" fill="#1b2333">{}</text><rect x="{LEFT}" y="{y}" width="{:.1}" height="22" fill="{LIMIT}"/><rect x="{LEFT}" y="{}" width="{:.1}" height="12" fill="{SLUICE}"/><text x="{:.1}" y="{}" fill="#1b2333">{:.0}k/s ({:.0}%)</text>"##,
            LEFT - 8.0,
            y + 15.0,
            escape(name),
            limit * scale,
            y + 5.0,
            rate * scale,
            LEFT + limit.max(rate) * scale + 6.0,
            y + 15.0,
            rate / 1000.0,
            100.0 * rate / limit.max(1.0)
        );
    }
    let y = height - 16.0;
    svg += &format!(
        r##"<rect x="{LEFT}" y="{}" width="12" height="10" fill="{SLUICE}"/><text x="{}" y="{y}" fill="#6b768a">Sluice, events/s</text><rect x="{}" y="{}" width="12" height="10" fill="{LIMIT}"/><text x="{}" y="{y}" fill="#6b768a">limit of the same input (same run)</text></svg>"##,
        y - 9.0,
        LEFT + 16.0,
        LEFT + 140.0,
        y - 9.0,
        LEFT + 156.0
    );
    svg
}

/// p50, p99 and p99.9 per latency result, on one scale.
pub fn latency(results: &[Value], title: &str) -> String {
    let rows: Vec<&Value> = results
        .iter()
        .filter(|r| !r["latency_ms"].is_null())
        .collect();
    let height = 60.0 + ROW * 1.5 * rows.len() as f64 + 30.0;
    let max = rows
        .iter()
        .filter_map(|r| r["latency_ms"]["p999"].as_f64())
        .fold(1.0, f64::max);
    let scale = (WIDTH - LEFT - RIGHT) / max;
    let colors = [("p50", "#14965b"), ("p99", "#3563e9"), ("p999", "#7a3fe0")];
    let mut svg = header(height, title);
    for (i, r) in rows.iter().enumerate() {
        let y = 50.0 + ROW * 1.5 * i as f64;
        svg += &format!(
            r##"<text x="{}" y="{}" text-anchor="end" fill="#1b2333">{}</text>"##,
            LEFT - 8.0,
            y + 20.0,
            escape(r["scenario"].as_str().unwrap_or("?"))
        );
        for (j, (key, color)) in colors.iter().enumerate() {
            let ms = r["latency_ms"][*key].as_f64().unwrap_or(0.0);
            let bar_y = y + j as f64 * 13.0;
            svg += &format!(
                r##"<rect x="{LEFT}" y="{bar_y}" width="{:.1}" height="11" fill="{color}"/><text x="{:.1}" y="{}" font-size="11" fill="#1b2333">{key} {ms} ms</text>"##,
                (ms * scale).max(1.0),
                LEFT + (ms * scale).max(1.0) + 6.0,
                bar_y + 10.0
            );
        }
    }
    svg + "</svg>"
}
