// Live figures of every persistent query and of the server, read from
// GET /metrics (Prometheus text) every two seconds.

import { h, clear, table, number, errorBox } from './dom.js';
import { kpi } from './analytics.js';

/** Samples of the exposition text: [{name, labels, value}]. */
export function parse(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const [, key, value] of (match[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key] = value;
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

export function show(root) {
  const kpis = h('div', { class: 'grid kpis', id: 'metric-kpis' });
  const queries = h('div', { class: 'panel', id: 'metric-queries' }, 'Loading…');
  const http = h('div', { class: 'panel', id: 'metric-http' });
  clear(root,
    h('h1', {}, 'Metrics'),
    h('p', { class: 'subtitle' }, 'Per persistent query and per HTTP route, from GET /metrics (Prometheus format), refreshed every two seconds.'),
    kpis, h('h2', {}, 'Persistent queries'), queries, h('h2', {}, 'HTTP requests'), http);

  let previous = null;
  let timer = null;
  async function load() {
    try {
      const response = await fetch('/metrics');
      if (!response.ok) throw new Error(`GET /metrics: HTTP ${response.status}`);
      const samples = parse(await response.text());
      const now = performance.now();
      const byQuery = new Map();
      for (const s of samples.filter((x) => x.name.startsWith('sluice_query_') && x.labels.query_id)) {
        if (!byQuery.has(s.labels.query_id)) byQuery.set(s.labels.query_id, { query: s.labels.query_id, sink: s.labels.sink });
        byQuery.get(s.labels.query_id)[s.name.replace('sluice_query_', '')] = s.value;
      }
      // Processing errors also count the server's own readers; keep queries.
      const rows = [...byQuery.values()]
        .filter((r) => r.records_in_total !== undefined)
        .sort((a, b) => a.query.localeCompare(b.query));
      const seconds = previous ? (now - previous.at) / 1000 : 0;
      for (const r of rows) {
        const before = previous?.rows.get(r.query);
        r.rate = before && seconds > 0 ? (r.records_in_total - before.records_in_total) / seconds : null;
      }
      const one = (name) => samples.find((s) => s.name === name)?.value ?? 0;
      const sum = (key) => rows.reduce((n, r) => n + (r[key] ?? 0), 0);
      clear(kpis,
        kpi('Queries running', `${number(sum('running'))} / ${number(rows.length)}`),
        kpi('Records in', number(sum('records_in_total'))),
        kpi('Consumer lag', number(sum('consumer_lag'))),
        kpi('Processing-log records', number(one('sluice_processing_log_records_total'))),
        kpi('Push queries', number(one('sluice_push_queries_running'))));
      clear(queries, table([
        { label: 'Query', value: (r) => r.query },
        { label: 'State', value: (r) => h('span', { class: `badge ${r.running ? 'done' : 'failed'}` }, r.running ? 'running' : 'stopped') },
        { label: 'In', class: 'num', value: (r) => number(r.records_in_total) },
        { label: 'In/s', class: 'num', value: (r) => (r.rate === null ? '—' : number(r.rate)) },
        { label: 'Out', class: 'num', value: (r) => number(r.records_out_total) },
        { label: 'Errors', class: 'num', value: (r) => number(r.processing_errors_total ?? 0) },
        { label: 'Late', class: 'num', value: (r) => number(r.late_records_total ?? 0) },
        { label: 'State rows', class: 'num', value: (r) => number(r.state_rows) },
        { label: 'Lag', class: 'num', value: (r) => number(r.consumer_lag) },
      ], rows, { empty: 'No persistent queries.' }));
      const requests = samples
        .filter((s) => s.name === 'sluice_http_requests_total')
        .sort((a, b) => b.value - a.value)
        .slice(0, 15);
      clear(http, table([
        { label: 'Route', value: (s) => s.labels.route },
        { label: 'Method', value: (s) => s.labels.method },
        { label: 'Status', value: (s) => s.labels.code },
        { label: 'Requests', class: 'num', value: (s) => number(s.value) },
      ], requests));
      previous = { at: now, rows: new Map(rows.map((r) => [r.query, r])) };
    } catch (error) {
      clear(queries, errorBox(error));
    }
    timer = setTimeout(load, 2000);
  }
  load();
  return () => clearTimeout(timer);
}
