//! Charts of a benchmark run, drawn by the benchmark itself: throughput
//! against the limit per scenario, and latency percentiles. Each as SVG
//! (text stays text, crisp in BENCHMARKS.md on any viewer) and as PNG
//! (plotters on an RGB buffer, text from the embedded DejaVu Sans, for
//! viewers without SVG).

use std::sync::OnceLock;

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
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

/// The throughput results, the chart's height and pixels per event/s:
/// the layout the SVG and PNG charts share.
fn throughput_layout(results: &[Value]) -> (Vec<&Value>, f64, f64) {
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
    (rows, height, scale)
}

/// One bar pair per throughput result: Sluice, and its limit behind it.
pub fn throughput(results: &[Value], title: &str) -> String {
    let (rows, height, scale) = throughput_layout(results);
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

/// The percentiles a latency chart draws, and their colours.
const LATENCY_COLORS: [(&str, &str); 3] =
    [("p50", "#14965b"), ("p99", "#3563e9"), ("p999", "#7a3fe0")];

/// The latency results, the chart's height and pixels per millisecond:
/// one layout for the SVG and the PNG.
fn latency_layout(results: &[Value]) -> (Vec<&Value>, f64, f64) {
    let rows: Vec<&Value> = results
        .iter()
        .filter(|r| !r["latency_ms"].is_null())
        .collect();
    let height = 60.0 + ROW * 1.5 * rows.len() as f64 + 30.0;
    let max = rows
        .iter()
        .filter_map(|r| r["latency_ms"]["p999"].as_f64())
        .fold(1.0, f64::max);
    (rows, height, (WIDTH - LEFT - RIGHT) / max)
}

/// p50, p99 and p99.9 per latency result, on one scale.
pub fn latency(results: &[Value], title: &str) -> String {
    let (rows, height, scale) = latency_layout(results);
    let colors = LATENCY_COLORS;
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

/// DejaVu Sans (assets/fonts, with its licence), registered once as
/// plotters' sans-serif family.
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(anyhow!("the embedded chart font cannot be read"))
    }
}

/// PNG pixels are twice the SVG's units, so text stays legible.
const PX: f64 = 2.0;

fn rgb(hex: &str) -> RGBColor {
    let channel = |i: usize| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("00"), 16).unwrap_or(0);
    RGBColor(channel(1), channel(3), channel(5))
}

fn px(v: f64) -> i32 {
    (v * PX).round() as i32
}

/// Draws on a white canvas of `height` SVG units and encodes it.
fn png(
    height: f64,
    title: &str,
    draw: impl FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<Vec<u8>> {
    register_font()?;
    let (w, h) = ((WIDTH * PX) as u32, (height * PX) as u32);
    let mut buffer = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (w, h)).into_drawing_area();
        let failed =
            |e: plotters::drawing::DrawingAreaErrorKind<_>| anyhow!("drawing a chart: {e}");
        root.fill(&WHITE).map_err(failed)?;
        root.draw(&Text::new(
            title.to_string(),
            (px(16.0), px(10.0)),
            ("sans-serif", 15.0 * PX).into_font().color(&rgb("#1b2333")),
        ))
        .map_err(failed)?;
        draw(&root)?;
        root.present().map_err(failed)?;
    }
    super::png::encode_rgb(w, h, &buffer).ok_or_else(|| anyhow!("encoding a {w}x{h} PNG"))
}

fn text(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    s: &str,
    (x, y): (f64, f64),
    size: f64,
    color: &str,
    anchor: HPos,
) -> Result<()> {
    let style = ("sans-serif", size * PX)
        .into_font()
        .color(&rgb(color))
        .pos(Pos::new(anchor, VPos::Center));
    area.draw(&Text::new(s.to_string(), (px(x), px(y)), style))
        .map_err(|e| anyhow!("drawing a chart: {e}"))
}

fn bar(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    (x, y): (f64, f64),
    (w, h): (f64, f64),
    color: &str,
) -> Result<()> {
    area.draw(&Rectangle::new(
        [(px(x), px(y)), (px(x + w), px(y + h))],
        rgb(color).filled(),
    ))
    .map_err(|e| anyhow!("drawing a chart: {e}"))
}

/// [`throughput`] as PNG, with the same layout.
pub fn throughput_png(results: &[Value], title: &str) -> Result<Vec<u8>> {
    let (rows, height, scale) = throughput_layout(results);
    png(height, title, |area| {
        for (i, r) in rows.iter().enumerate() {
            let y = 50.0 + ROW * i as f64;
            let rate = r["events_per_sec"].as_f64().unwrap_or(0.0);
            let limit = r["limit_events_per_sec"].as_f64().unwrap_or(0.0);
            let name = r["scenario"].as_str().unwrap_or("?");
            text(
                area,
                name,
                (LEFT - 8.0, y + 11.0),
                12.0,
                "#1b2333",
                HPos::Right,
            )?;
            bar(area, (LEFT, y), (limit * scale, 22.0), LIMIT)?;
            bar(area, (LEFT, y + 5.0), (rate * scale, 12.0), SLUICE)?;
            text(
                area,
                &format!(
                    "{:.0}k/s ({:.0}%)",
                    rate / 1000.0,
                    100.0 * rate / limit.max(1.0)
                ),
                (LEFT + limit.max(rate) * scale + 6.0, y + 11.0),
                12.0,
                "#1b2333",
                HPos::Left,
            )?;
        }
        let y = height - 20.0;
        bar(area, (LEFT, y - 5.0), (12.0, 10.0), SLUICE)?;
        text(
            area,
            "Sluice, events/s",
            (LEFT + 16.0, y),
            12.0,
            "#6b768a",
            HPos::Left,
        )?;
        bar(area, (LEFT + 140.0, y - 5.0), (12.0, 10.0), LIMIT)?;
        text(
            area,
            "limit of the same input (same run)",
            (LEFT + 156.0, y),
            12.0,
            "#6b768a",
            HPos::Left,
        )
    })
}

/// [`latency`] as PNG, with the same layout.
pub fn latency_png(results: &[Value], title: &str) -> Result<Vec<u8>> {
    let (rows, height, scale) = latency_layout(results);
    let colors = LATENCY_COLORS;
    png(height, title, |area| {
        for (i, r) in rows.iter().enumerate() {
            let y = 50.0 + ROW * 1.5 * i as f64;
            let name = r["scenario"].as_str().unwrap_or("?");
            text(
                area,
                name,
                (LEFT - 8.0, y + 18.0),
                12.0,
                "#1b2333",
                HPos::Right,
            )?;
            for (j, (key, color)) in colors.iter().enumerate() {
                let ms = r["latency_ms"][*key].as_f64().unwrap_or(0.0);
                let bar_y = y + j as f64 * 13.0;
                let width = (ms * scale).max(1.0);
                bar(area, (LEFT, bar_y), (width, 11.0), color)?;
                text(
                    area,
                    &format!("{key} {ms} ms"),
                    (LEFT + width + 6.0, bar_y + 5.5),
                    11.0,
                    "#1b2333",
                    HPos::Left,
                )?;
            }
        }
        Ok(())
    })
}
