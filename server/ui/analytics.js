// Live windowed analytics of the match game, redrawn as the windowed
// projections change.

import { query, follow } from './api.js';
import { h, clear, number, percent, errorBox } from './dom.js';
import { lineChart, seriesBy } from './charts.js';

const HISTORY_MS = 30 * 60_000;

export function show(root) {
  const started = h('div', { class: 'panel', id: 'chart-matches-per-minute' });
  const latency = h('div', { class: 'panel', id: 'chart-p95-latency' });
  const winRate = h('div', { class: 'panel', id: 'chart-win-rate' });
  const latest = h('div', { class: 'grid kpis' });
  clear(root,
    h('h1', {}, 'Live analytics'),
    h('p', { class: 'subtitle' }, 'Windowed projections over match.events: tumbling 1-minute windows and 5-minute windows hopping every minute. Charts follow the projections as they change.'),
    latest,
    h('div', { class: 'grid two' },
      h('div', {}, h('h2', {}, 'Matches started per minute, by mode'), started),
      h('div', {}, h('h2', {}, 'Robot p95 response latency (ms), 5-minute windows'), latency),
      h('div', {}, h('h2', {}, 'Robot win rate, 5-minute windows'), winRate)));

  async function load() {
    const since = Date.now() - HISTORY_MS;
    try {
      const [perMinute, perModel, totals] = await Promise.all([
        query(`SELECT mode, WINDOWSTART AS ws, started FROM matches_per_minute WHERE WINDOWSTART >= ${since} ORDER BY WINDOWSTART`),
        query(`SELECT model, WINDOWSTART AS ws, p95_latency_ms, win_rate, matches FROM robot_model_performance WHERE WINDOWSTART >= ${since} ORDER BY WINDOWSTART`),
        query(`SELECT SUM(started) AS started, COUNT(DISTINCT mode) AS modes FROM matches_per_minute WHERE WINDOWSTART >= ${Date.now() - 10 * 60_000}`),
      ]);
      clear(started, lineChart(seriesBy(perMinute.objects, 'mode', 'ws', 'started'), { format: (y) => number(y) }));
      clear(latency, lineChart(seriesBy(perModel.objects, 'model', 'ws', 'p95_latency_ms'), { format: (y) => number(y) }));
      const rated = perModel.objects.filter((r) => r.win_rate !== null);
      clear(winRate, lineChart(seriesBy(rated, 'model', 'ws', 'win_rate'), { format: percent, yMax: 1 }));
      const newest = perModel.objects.length ? Math.max(...perModel.objects.map((r) => r.ws)) : null;
      const current = perModel.objects.filter((r) => r.ws === newest);
      const p95 = current.length ? Math.max(...current.map((r) => r.p95_latency_ms ?? 0)) : null;
      clear(latest,
        kpi('Matches started, last 10 min', number(totals.objects[0]?.started ?? 0)),
        kpi('Robot models active', number(current.length)),
        kpi('Slowest model p95 (current window)', p95 === null ? '—' : `${number(p95)} ms`));
    } catch (error) {
      clear(started, errorBox(error));
    }
  }
  load();
  const stops = [follow('matches_per_minute', load, 2000), follow('robot_model_performance', load, 2000)];
  return () => stops.forEach((stop) => stop());
}

export function kpi(label, value) {
  return h('div', { class: 'kpi' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value));
}
