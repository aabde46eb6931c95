// Match history: every match with search, filters, paging, and live
// updates as the match_history projection changes.

import { query, follow, literal } from './api.js';
import { h, clear, table, number, duration, ago, errorBox } from './dom.js';

const PAGE = 25;
const RANGES = [['', 'Any time'], ['15', 'Last 15 minutes'], ['60', 'Last hour'], ['1440', 'Last 24 hours']];

export function show(root) {
  const state = { search: '', player: '', status: '', mode: '', range: '', page: 0 };
  const seen = new Map();
  const search = h('input', { type: 'search', placeholder: 'Match id or player…', 'aria-label': 'Search' });
  const player = h('select', { 'aria-label': 'Player' }, h('option', { value: '' }, 'All players'));
  const status = select('Status', [['', 'Any status'], ['LIVE', 'Live'], ['FINISHED', 'Finished']]);
  const mode = select('Mode', [['', 'Any mode'], ['classic', 'Classic'], ['duel', 'Duel'], ['blitz', 'Blitz']]);
  const range = select('Started', RANGES);
  const note = h('span', { class: 'live-note' }, h('span', { class: 'badge live' }, 'Live'), 'updates as events arrive');
  const body = h('div', { class: 'panel', id: 'match-list' });
  const pager = h('div', { class: 'pager' });
  clear(root,
    h('h1', {}, 'Match history'),
    h('p', { class: 'subtitle' }, 'Every match of the game, folded from match.events by the match_history projection.'),
    h('div', { class: 'toolbar' }, search, player, status, mode, range, h('span', { class: 'spacer' }), note),
    body, pager);

  let typing = null;
  search.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(() => { state.search = search.value.trim(); state.page = 0; load(); }, 250);
  });
  for (const [control, key] of [[player, 'player'], [status, 'status'], [mode, 'mode'], [range, 'range']]) {
    control.addEventListener('change', () => { state[key] = control.value; state.page = 0; load(); });
  }

  query("SELECT player_id FROM player_leaderboard WHERE kind = 'HUMAN' ORDER BY player_id")
    .then((r) => r.objects.forEach((p) => player.append(h('option', { value: p.player_id }, p.player_id))))
    .catch(() => {});

  function where() {
    const terms = [];
    if (state.search) {
      const q = state.search.toLowerCase();
      terms.push(`(LCASE(match_id) LIKE ${literal(`%${q}%`)} OR ARRAY_CONTAINS(players, ${literal(state.search)}))`);
    }
    if (state.player) terms.push(`ARRAY_CONTAINS(players, ${literal(state.player)})`);
    if (state.status) terms.push(`status = ${literal(state.status)}`);
    if (state.mode) terms.push(`mode = ${literal(state.mode)}`);
    if (state.range) terms.push(`started_at >= ${Date.now() - Number(state.range) * 60_000}`);
    return terms.length ? ` WHERE ${terms.join(' AND ')}` : '';
  }

  let loading = false;
  async function load() {
    if (loading) return;
    loading = true;
    try {
      const filter = where();
      const [page, count] = await Promise.all([
        query(`SELECT * FROM match_history${filter} ORDER BY last_update DESC, match_id LIMIT ${PAGE} OFFSET ${state.page * PAGE}`),
        query(`SELECT COUNT(*) AS n FROM match_history${filter}`),
      ]);
      render(page.objects, count.objects[0]?.n ?? 0);
    } catch (error) {
      clear(body, errorBox(error));
    } finally {
      loading = false;
    }
  }

  function render(rows, total) {
    clear(body, table([
      { label: 'Match', value: (m) => h('a', { href: `#/match/${encodeURIComponent(m.match_id)}` }, m.match_id) },
      { label: 'Mode', value: (m) => m.mode ?? '—' },
      { label: 'Players', value: (m) => (m.players || []).map((p) => h('span', { class: p.startsWith('bot-') ? 'chip robot' : 'chip' }, p)) },
      { label: 'Messages', class: 'num', value: (m) => number(m.messages) },
      { label: 'Duration', class: 'num', value: (m) => duration(m.duration_ms) },
      { label: 'Started', value: (m) => ago(m.started_at) },
      { label: 'Status', value: (m) => h('span', { class: `badge ${m.status === 'LIVE' ? 'live' : 'finished'}` }, m.status === 'LIVE' ? 'Live' : 'Finished') },
      { label: 'Result', value: (m) => result(m) },
    ], rows, {
      rowKey: (m) => m.match_id,
      onRowClick: (m) => { location.hash = `#/match/${encodeURIComponent(m.match_id)}`; },
      empty: 'No match matches these filters.',
    }));
    // Rows whose last update changed since the previous render flash.
    for (const m of rows) {
      if (seen.has(m.match_id) && seen.get(m.match_id) !== m.last_update) {
        body.querySelector(`tr[data-key="${CSS.escape(m.match_id)}"]`)?.classList.add('flash');
      }
      seen.set(m.match_id, m.last_update);
    }
    const pages = Math.max(1, Math.ceil(total / PAGE));
    clear(pager,
      `${number(total)} matches · page ${state.page + 1} of ${number(pages)}`,
      h('button', { disabled: state.page === 0, onclick: () => { state.page -= 1; load(); } }, '‹ Newer'),
      h('button', { disabled: state.page + 1 >= pages, onclick: () => { state.page += 1; load(); } }, 'Older ›'));
  }

  load();
  const stop = follow('match_history', load, 1000);
  return () => { stop(); clearTimeout(typing); };
}

export function result(m) {
  if (m.status !== 'FINISHED') return h('span', { class: 'muted' }, 'in play');
  if (m.winner === 'HUMANS') return h('span', { class: 'badge humans' }, 'Humans won');
  if (m.winner === 'ROBOT') return h('span', { class: 'badge robot' }, 'Robot won');
  return h('span', { class: 'muted' }, (m.reason || 'ended').toLowerCase());
}

function select(label, options) {
  return h('select', { 'aria-label': label },
    options.map(([value, text]) => h('option', { value }, text)));
}
