// The agent orchestrator's dashboard: event-sourced session state, task
// latency per role, quality gates, and task round trips from the
// correlation-id join.

import { query, follow } from './api.js';
import { h, clear, table, number, percent, duration, ago, clock, errorBox } from './dom.js';
import { lineChart, seriesBy } from './charts.js';
import { kpi } from './analytics.js';

const STATES = { DONE: 'done', FAILED: 'failed' };

export function show(root) {
  const kpis = h('div', { class: 'grid kpis', id: 'agent-kpis' });
  const sessions = h('div', { class: 'panel', id: 'sessions' }, 'Loading…');
  const latency = h('div', { class: 'panel', id: 'chart-task-latency' });
  const gates = h('div', { class: 'panel', id: 'quality-gates' });
  const roundtrips = h('div', { class: 'panel', id: 'roundtrips' });
  clear(root,
    h('h1', {}, 'Agent sessions'),
    h('p', { class: 'subtitle' }, 'Projections over session.events, agent.tasks.*, quality.gates and monitoring.events.'),
    kpis,
    h('h2', {}, 'Latest sessions'), sessions,
    h('div', { class: 'grid two' },
      h('div', {}, h('h2', {}, 'Task p95 latency per role (s), 1-minute windows'), latency),
      h('div', {}, h('h2', {}, 'Quality gates, current 10-minute window'), gates)),
    h('h2', {}, 'Task round trips (assigned ⋈ finished on correlation id)'), roundtrips);

  async function load() {
    try {
      const [byState, agents, latest, perRole, gateRates, trips] = await Promise.all([
        query('SELECT workflow_state, COUNT(*) AS n FROM session_state GROUP BY workflow_state'),
        query("SELECT COUNT(*) AS busy FROM agent_status WHERE status = 'BUSY'"),
        query(`SELECT s.session_id, s.project, s.workflow_state, s.iterations, s.worker_model, s.created_at, s.last_update,
                      t.assigned, t.completed, t.failed, t.tokens
               FROM session_state s LEFT JOIN session_tasks t ON s.session_id = t.session_id
               ORDER BY s.last_update DESC LIMIT 12`),
        query(`SELECT agent_role, WINDOWSTART AS ws, p95_ms FROM task_latency_by_role WHERE WINDOWSTART >= ${Date.now() - 30 * 60_000} ORDER BY WINDOWSTART`),
        query('SELECT gate, runs, passed, pass_rate, avg_score, WINDOWSTART AS ws FROM quality_gate_pass_rate WHERE WINDOWSTART = (SELECT MAX(WINDOWSTART) FROM quality_gate_pass_rate) ORDER BY gate'),
        query('SELECT * FROM task_roundtrips ORDER BY finished_at DESC LIMIT 10'),
      ]);
      const count = (state) => byState.objects.filter((r) => state(r.workflow_state)).reduce((n, r) => n + r.n, 0);
      clear(kpis,
        kpi('Sessions', number(count(() => true))),
        kpi('Running', number(count((s) => !(s in STATES)))),
        kpi('Completed', number(count((s) => s === 'DONE'))),
        kpi('Failed', number(count((s) => s === 'FAILED'))),
        kpi('Agents busy', number(agents.objects[0]?.busy ?? 0)));
      clear(sessions, table([
        { label: 'Session', value: (s) => s.session_id },
        { label: 'Project', value: (s) => s.project ?? '—' },
        { label: 'State', value: (s) => h('span', { class: `badge ${STATES[s.workflow_state] || 'running'}` }, s.workflow_state) },
        { label: 'Iteration', class: 'num', value: (s) => number(s.iterations) },
        { label: 'Worker model', value: (s) => s.worker_model ?? '—' },
        { label: 'Tasks done / failed', class: 'num', value: (s) => `${number(s.completed ?? 0)} / ${number(s.failed ?? 0)}` },
        { label: 'Tokens', class: 'num', value: (s) => number(s.tokens) },
        { label: 'Running for', class: 'num', value: (s) => duration(s.last_update - s.created_at) },
        { label: 'Updated', value: (s) => ago(s.last_update) },
      ], latest.objects));
      const seconds = perRole.objects.map((r) => ({ ...r, p95_s: (r.p95_ms ?? 0) / 1000 }));
      clear(latency, lineChart(seriesBy(seconds, 'agent_role', 'ws', 'p95_s'), { format: (y) => number(y, 0) }));
      clear(gates, table([
        { label: 'Gate', value: (g) => g.gate },
        { label: 'Runs', class: 'num', value: (g) => number(g.runs) },
        { label: 'Passed', class: 'num', value: (g) => number(g.passed) },
        { label: 'Pass rate', value: (g) => h('span', { class: 'rate' }, h('span', { class: 'bar' }, h('span', { style: `width:${(g.pass_rate * 100).toFixed(1)}%` })), percent(g.pass_rate)) },
        { label: 'Avg score', class: 'num', value: (g) => number(g.avg_score, 2) },
      ], gateRates.objects));
      clear(roundtrips, table([
        { label: 'Correlation id', value: (t) => t.correlation_id },
        { label: 'Session', value: (t) => t.session_id },
        { label: 'Role', value: (t) => t.agent_role },
        { label: 'Model', value: (t) => t.model },
        { label: 'Attempt', class: 'num', value: (t) => number(t.attempt) },
        { label: 'Outcome', value: (t) => h('span', { class: `badge ${t.outcome === 'TASK_FAILED' ? 'failed' : 'done'}` }, t.outcome === 'TASK_FAILED' ? `failed: ${t.error}` : 'completed') },
        { label: 'Round trip', class: 'num', value: (t) => duration(t.roundtrip_ms) },
        { label: 'Finished', value: (t) => clock(t.finished_at) },
      ], trips.objects));
    } catch (error) {
      clear(sessions, errorBox(error));
    }
  }
  load();
  const stops = [follow('session_state', load, 2000), follow('task_roundtrips', load, 2000)];
  return () => stops.forEach((stop) => stop());
}
