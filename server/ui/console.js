// The SQL console: pull queries (any SQL over the live projections),
// push queries (EMIT CHANGES, streamed until stopped) and statements.

import { query, push, ksql } from './api.js';
import { h, clear, errorBox } from './dom.js';

const EXAMPLES = [
  ['Top robot models by undetected rate', 'SELECT model, matches, wins, CAST(wins AS DOUBLE) / matches AS undetected_rate\nFROM robot_model_leaderboard\nORDER BY undetected_rate DESC;'],
  ['Longest finished matches', "SELECT match_id, mode, messages, duration_ms, winner\nFROM match_history\nWHERE status = 'FINISHED'\nORDER BY duration_ms DESC\nLIMIT 10;"],
  ['Sessions joined with their tasks', 'SELECT s.session_id, s.workflow_state, t.completed, t.failed\nFROM session_state s JOIN session_tasks t ON s.session_id = t.session_id\nORDER BY t.failed DESC\nLIMIT 10;'],
  ['Follow match history (push)', 'SELECT * FROM match_history EMIT CHANGES;'],
  ['Show tables', 'SHOW TABLES;'],
];
const MAX_PUSH_ROWS = 500;

export function show(root) {
  const editor = h('textarea', { id: 'sql', spellcheck: 'false', 'aria-label': 'SQL' });
  editor.value = EXAMPLES[0][1];
  const run = h('button', { class: 'primary', id: 'run' }, 'Run ▸');
  const stop = h('button', { disabled: true }, 'Stop');
  const examples = h('select', { 'aria-label': 'Examples' },
    h('option', { value: '' }, 'Examples…'), EXAMPLES.map(([name], i) => h('option', { value: i }, name)));
  const output = h('div', { class: 'result', id: 'result' });
  const status = h('div', { class: 'status-line' });
  clear(root,
    h('h1', {}, 'SQL console'),
    h('p', { class: 'subtitle' }, 'Pull queries are full SQL over the live projections (filters, ORDER BY, aggregates, joins); queries ending in EMIT CHANGES stream; other statements go to the ksqlDB API. Ctrl+Enter runs.'),
    h('div', { class: 'panel console' }, editor, h('div', { class: 'toolbar', style: 'margin-top:10px;margin-bottom:0' }, run, stop, examples)),
    h('div', { class: 'panel' }, output, status));

  let running = null;
  examples.addEventListener('change', () => {
    if (examples.value !== '') editor.value = EXAMPLES[Number(examples.value)][1];
    examples.value = '';
  });
  editor.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); execute(); }
  });
  run.addEventListener('click', execute);
  stop.addEventListener('click', () => finish('Stopped.'));

  function finish(message) {
    if (running) running.stop();
    running = null;
    stop.disabled = true;
    run.disabled = false;
    if (message) status.textContent = message;
  }

  async function execute() {
    finish();
    const sql = editor.value.trim();
    if (!sql) return;
    const started = performance.now();
    clear(output);
    status.textContent = 'Running…';
    const isQuery = /^\s*select\b/i.test(sql);
    try {
      if (isQuery && /emit\s+changes\s*;?\s*$/i.test(sql)) {
        streamRows(sql);
      } else if (isQuery) {
        const result = await query(sql);
        clear(output, grid(result.columns, result.rows));
        status.textContent = `${result.rows.length} row(s) in ${Math.round(performance.now() - started)} ms`;
      } else {
        const entities = await ksql(sql);
        clear(output, entities.map(entity));
        status.textContent = `Done in ${Math.round(performance.now() - started)} ms`;
      }
    } catch (error) {
      clear(output, errorBox(error));
      status.textContent = '';
    }
  }

  function streamRows(sql) {
    let body = null;
    let rows = 0;
    run.disabled = true;
    stop.disabled = false;
    running = push(sql, {
      onHeader(header) {
        body = h('tbody');
        clear(output, h('table', {}, h('thead', {}, h('tr', {}, header.columnNames.map((c) => h('th', {}, c)))), body));
        status.textContent = `Streaming (query ${header.queryId})…`;
      },
      onRow(row) {
        rows += 1;
        body.prepend(h('tr', { class: 'flash' }, row.map(cell)));
        if (body.rows.length > MAX_PUSH_ROWS) body.lastChild.remove();
        status.textContent = `Streaming: ${rows} row(s) received; newest first.`;
      },
      onError(error) {
        output.prepend(errorBox(error));
        finish('');
      },
    });
  }
  return () => finish();
}

function cell(value) {
  if (value === null || value === undefined) return h('td', { class: 'muted' }, 'null');
  return h('td', {}, typeof value === 'object' ? JSON.stringify(value) : String(value));
}

function grid(columns, rows) {
  if (!rows.length) return h('div', { class: 'empty' }, 'No rows.');
  return h('table', {}, h('thead', {}, h('tr', {}, columns.map((c) => h('th', {}, c)))),
    h('tbody', {}, rows.map((row) => h('tr', {}, row.map(cell)))));
}

/** A /ksql entity: the lists of SHOW statements as tables, others as JSON. */
function entity(e) {
  for (const key of ['streams', 'tables', 'queries', 'topics', 'functions']) {
    if (Array.isArray(e[key]) && e[key].length && typeof e[key][0] === 'object') {
      const columns = Object.keys(e[key][0]).filter((c) => typeof e[key][0][c] !== 'object');
      return grid(columns, e[key].map((item) => columns.map((c) => item[c])));
    }
  }
  return h('pre', { class: 'json' }, JSON.stringify(e, null, 2));
}
