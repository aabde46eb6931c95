// Small SVG charts for windowed projections: time on x, one line per
// series. Enough for live dashboards without a charting library.

import { h } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';
export const PALETTE = ['#3563e9', '#7a3fe0', '#14965b', '#d97706', '#d64545', '#0891b2', '#64748b'];

function s(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * magnitude) return step * magnitude;
  }
  return 10 * magnitude;
}

/**
 * series: [{name, points: [[epochMs, value], ...]}]; options: {format(y),
 * yMax}. Returns a node holding the chart and its legend.
 */
export function lineChart(series, { format = (y) => y, yMax } = {}) {
  const width = 640, height = 240, left = 52, right = 12, top = 10, bottom = 26;
  const points = series.flatMap((x) => x.points);
  if (!points.length) return h('div', { class: 'empty' }, 'Waiting for the first window…');
  const xs = points.map((p) => p[0]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 60_000);
  const top_ = yMax ?? niceMax(Math.max(...points.map((p) => p[1] ?? 0)));
  const X = (x) => left + ((x - x0) / (x1 - x0)) * (width - left - right);
  const Y = (y) => top + (1 - (y ?? 0) / top_) * (height - top - bottom);
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none', role: 'img' });
  for (let i = 0; i <= 4; i += 1) {
    const y = (top_ * i) / 4;
    svg.append(s('line', { class: 'gridline', x1: left, x2: width - right, y1: Y(y), y2: Y(y) }));
    svg.append(s('text', { class: 'tick', x: left - 6, y: Y(y) + 4, 'text-anchor': 'end' }, format(y)));
  }
  for (let i = 0; i <= 4; i += 1) {
    const x = x0 + ((x1 - x0) * i) / 4;
    const label = new Date(x).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    svg.append(s('text', { class: 'tick', x: X(x), y: height - 8, 'text-anchor': 'middle' }, label));
  }
  svg.append(s('line', { class: 'axis', x1: left, x2: width - right, y1: Y(0), y2: Y(0) }));
  series.forEach((line, i) => {
    const color = PALETTE[i % PALETTE.length];
    const sorted = [...line.points].sort((a, b) => a[0] - b[0]);
    const path = sorted.map((p, j) => `${j ? 'L' : 'M'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join('');
    svg.append(s('path', { d: path, fill: 'none', stroke: color, 'stroke-width': 2, 'vector-effect': 'non-scaling-stroke' }));
    for (const p of sorted) {
      const dot = s('circle', { cx: X(p[0]), cy: Y(p[1]), r: 2.5, fill: color });
      dot.append(s('title', {}, `${line.name}: ${format(p[1])} at ${new Date(p[0]).toLocaleTimeString()}`));
      svg.append(dot);
    }
  });
  const legend = h('div', { class: 'legend' }, series.map((line, i) =>
    h('span', {}, h('i', { style: `background:${PALETTE[i % PALETTE.length]}` }), line.name)));
  const chart = h('div', { class: 'chart' });
  chart.append(svg, legend);
  return chart;
}

/** Groups rows into series by `key`, points from `x` and `y` columns. */
export function seriesBy(rows, key, x, y) {
  const byName = new Map();
  for (const row of rows) {
    const name = row[key] ?? '(none)';
    if (!byName.has(name)) byName.set(name, []);
    byName.get(name).push([row[x], row[y]]);
  }
  return [...byName.entries()].sort().map(([name, points]) => ({ name, points }));
}
