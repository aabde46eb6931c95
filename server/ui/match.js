// One match: its summary from match_history and a replay of its events,
// read in order from the match_events stream.

import { query, literal } from './api.js';
import { h, clear, number, duration, clock, errorBox } from './dom.js';
import { result } from './matches.js';

const SPEEDS = [1, 4, 16];

export function show(root, [id]) {
  const summary = h('div', { class: 'panel' }, 'Loading…');
  const transcript = h('div', { class: 'transcript', id: 'replay' });
  const progress = h('span');
  const play = h('button', { class: 'primary' }, 'Pause');
  const speed = h('select', { 'aria-label': 'Replay speed' }, SPEEDS.map((x) => h('option', { value: x, selected: x === 16 }, `${x}×`)));
  const skip = h('button', {}, 'Skip to end');
  const restart = h('button', {}, 'Restart');
  clear(root,
    h('p', {}, h('a', { href: '#/matches' }, '‹ Match history')),
    h('h1', {}, `Match ${id}`),
    h('p', { class: 'subtitle' }, 'Replayed from its events in match.events, in the order they happened.'),
    summary,
    h('div', { class: 'panel' },
      h('h2', {}, 'Replay'),
      h('div', { class: 'replay-controls' }, play, restart, skip, speed, h('div', { class: 'progress' }, progress)),
      transcript));

  let events = [];
  let next = 0;
  let timer = null;
  let playing = true;
  let robot = null;

  function step() {
    timer = null;
    if (!playing || next >= events.length) {
      if (next >= events.length) { playing = false; play.textContent = 'Play'; }
      return;
    }
    transcript.append(render(events[next], robot));
    transcript.scrollTop = transcript.scrollHeight;
    next += 1;
    progress.style.width = `${(100 * next) / events.length}%`;
    if (next < events.length) {
      const gap = events[next].event_ts - events[next - 1].event_ts;
      timer = setTimeout(step, Math.min(gap / Number(speed.value), 1500));
    } else {
      playing = false;
      play.textContent = 'Play';
    }
  }
  play.addEventListener('click', () => {
    if (next >= events.length) { clear(transcript); next = 0; }
    playing = !playing;
    play.textContent = playing ? 'Pause' : 'Play';
    if (playing && !timer) step();
  });
  restart.addEventListener('click', () => {
    clearTimeout(timer); timer = null; clear(transcript); next = 0; playing = true; play.textContent = 'Pause'; step();
  });
  skip.addEventListener('click', () => {
    clearTimeout(timer); timer = null;
    while (next < events.length) transcript.append(render(events[next++], robot));
    progress.style.width = '100%';
    playing = false; play.textContent = 'Play';
    transcript.scrollTop = transcript.scrollHeight;
  });

  (async () => {
    try {
      const [history, log] = await Promise.all([
        query(`SELECT * FROM match_history WHERE match_id = ${literal(id)}`),
        query(`SELECT * FROM match_events WHERE match_id = ${literal(id)} ORDER BY event_ts, ROWOFFSET`),
      ]);
      const m = history.objects[0];
      if (!m) { clear(summary, errorBox(new Error(`No match ${id}.`))); return; }
      robot = (m.players || []).find((p) => p.startsWith('bot-'));
      clear(summary, h('div', { class: 'summary' },
        fact('Status', result(m)),
        fact('Mode', m.mode ?? '—'),
        fact('Players', (m.players || []).map((p) => h('span', { class: p === robot ? 'chip robot' : 'chip' }, p))),
        fact('Robot model', m.robot_model ?? '—'),
        fact('Messages', number(m.messages)),
        fact('Votes', number(m.votes)),
        fact('Duration', duration(m.duration_ms)),
        fact('Started', new Date(m.started_at).toLocaleString())));
      events = log.objects;
      step();
    } catch (error) {
      clear(summary, errorBox(error));
    }
  })();
  return () => clearTimeout(timer);
}

function fact(label, value) {
  return h('div', {}, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value));
}

function render(e, robot) {
  const at = h('span', { class: 'muted' }, ` · ${clock(e.event_ts)}`);
  switch (e.event_type) {
    case 'MATCH_CREATED':
      return h('div', { class: 'system replay-event' }, `Match created (${e.mode})`, at);
    case 'PLAYER_JOINED':
      return h('div', { class: 'system replay-event' }, `${e.player_id} joined`, at);
    case 'MESSAGE_SENT':
      return h('div', { class: 'bubble replay-event' }, h('div', { class: 'who' }, e.player_id, at), e.text);
    case 'ROBOT_RESPONSE':
      return h('div', { class: 'bubble robot replay-event' },
        h('div', { class: 'who' }, `${e.player_id} · ${e.model} · ${number(e.latency_ms)} ms · ${number(e.tokens)} tokens`, at), e.text);
    case 'VOTE_CAST':
      return h('div', { class: 'system replay-event' }, `${e.voter_id} votes ${e.suspect_id} is the robot`,
        e.suspect_id === robot ? ' ✓' : ' ✗', at);
    case 'MATCH_ENDED': {
      const text = e.winner === 'HUMANS' ? 'The humans unmasked the robot'
        : e.winner === 'ROBOT' ? `The robot (${e.model}) went undetected` : `Match ended: ${(e.reason || '').toLowerCase()}`;
      return h('div', { class: `ending replay-event ${e.winner === 'ROBOT' ? 'robot' : ''}` }, text, at);
    }
    default:
      return h('div', { class: 'system replay-event' }, e.event_type, at);
  }
}
