// Leaderboards: human players and robot models, live.

import { query, follow } from './api.js';
import { h, clear, table, number, percent, ago, errorBox } from './dom.js';

function rate(wins, played, robot) {
  const share = played ? wins / played : 0;
  return h('span', { class: 'rate' }, h('span', { class: robot ? 'bar robot' : 'bar' }, h('span', { style: `width:${(share * 100).toFixed(1)}%` })), percent(played ? share : null));
}

export function show(root) {
  const players = h('div', { class: 'panel', id: 'player-leaderboard' }, 'Loading…');
  const robots = h('div', { class: 'panel', id: 'robot-leaderboard' }, 'Loading…');
  clear(root,
    h('h1', {}, 'Leaderboards'),
    h('p', { class: 'subtitle' }, 'Wins per human player (player_leaderboard) and per robot model (robot_model_leaderboard), over all finished matches.'),
    h('div', { class: 'grid two' },
      h('div', {}, h('h2', {}, 'Top human players'), players),
      h('div', {}, h('h2', {}, 'Robot models'), robots)));

  async function load() {
    try {
      const [humans, models] = await Promise.all([
        query("SELECT * FROM player_leaderboard WHERE kind = 'HUMAN' ORDER BY wins DESC, matches ASC, player_id LIMIT 20"),
        query('SELECT * FROM robot_model_leaderboard ORDER BY CASE WHEN matches > 0 THEN CAST(wins AS DOUBLE) / matches ELSE 0 END DESC'),
      ]);
      clear(players, table([
        { label: '#', value: () => '' },
        { label: 'Player', value: (p) => p.player_id },
        { label: 'Wins', class: 'num', value: (p) => number(p.wins) },
        { label: 'Played', class: 'num', value: (p) => number(p.matches) },
        { label: 'Win rate', value: (p) => rate(p.wins, p.matches, false) },
        { label: 'Last played', value: (p) => ago(p.last_played) },
      ], humans.objects));
      players.querySelectorAll('tbody tr').forEach((tr, i) => { tr.firstChild.textContent = i + 1; });
      clear(robots, table([
        { label: 'Model', value: (m) => h('span', { class: 'chip robot' }, m.model) },
        { label: 'Matches', class: 'num', value: (m) => number(m.matches) },
        { label: 'Undetected', value: (m) => rate(m.wins, m.matches, true) },
        { label: 'Avg latency', class: 'num', value: (m) => `${number(m.avg_latency_ms)} ms` },
        { label: 'Avg tokens', class: 'num', value: (m) => number(m.avg_tokens, 1) },
      ], models.objects));
    } catch (error) {
      clear(players, errorBox(error));
    }
  }
  load();
  const stops = [follow('player_leaderboard', load, 2000), follow('robot_model_leaderboard', load, 2000)];
  return () => stops.forEach((stop) => stop());
}
