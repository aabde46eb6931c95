// The web UI: a hash router over the views, and the server status.

import { h, clear } from './dom.js';
import * as matches from './matches.js';
import * as match from './match.js';
import * as leaderboards from './leaderboards.js';
import * as analytics from './analytics.js';
import * as agents from './agents.js';
import * as consoleView from './console.js';
import * as projections from './projections.js';
import * as processingLog from './processing-log.js';
import * as metrics from './metrics.js';

const routes = {
  matches, match, leaderboards, analytics, agents, console: consoleView, projections, 'processing-log': processingLog, metrics,
};
const root = document.getElementById('view');
let leave = null;

function route() {
  if (leave) leave();
  leave = null;
  const [name = 'matches', ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  const view = routes[name] || matches;
  document.querySelectorAll('nav a').forEach((a) => {
    const active = a.dataset.view === name || (name === 'match' && a.dataset.view === 'matches');
    a.classList.toggle('active', active);
  });
  clear(root);
  window.scrollTo(0, 0);
  leave = view.show(root, rest.map(decodeURIComponent)) || null;
}

async function watchServer() {
  const status = document.getElementById('server-status');
  try {
    const response = await fetch('/healthcheck');
    const body = await response.json();
    const up = response.ok && body.isHealthy;
    clear(status, h('span', { class: `dot ${up ? 'up' : 'down'}` }), up ? 'server healthy' : 'server unhealthy');
  } catch {
    clear(status, h('span', { class: 'dot down' }), 'server unreachable');
  }
  setTimeout(watchServer, 5000);
}

window.addEventListener('hashchange', route);
route();
watchServer();
