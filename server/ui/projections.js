// Every projection the server keeps, with its columns and row count.

import { h, clear, table, number, errorBox } from './dom.js';

export function show(root) {
  const list = h('div', { class: 'panel' }, 'Loading…');
  clear(root,
    h('h1', {}, 'Projections'),
    h('p', { class: 'subtitle' }, 'The streams and tables of queries/*.sql, materialized and queryable with SQL from the console or GET /projections/{name}.'),
    list);
  fetch('/projections')
    .then((r) => r.json())
    .then((all) => clear(list, table([
      { label: 'Name', value: (p) => h('a', { href: `/projections/${encodeURIComponent(p.name)}?limit=20` }, p.name) },
      { label: 'Type', value: (p) => `${p.type.toLowerCase()}${p.windowed ? ' (windowed)' : ''}` },
      { label: 'Topic', value: (p) => p.topic },
      { label: 'Rows', class: 'num', value: (p) => number(p.rows) },
      { label: 'Columns', value: (p) => p.columns.map((c) => h('span', { class: 'chip' }, `${c.name} ${c.type}`)) },
    ], all)))
    .catch((error) => clear(list, errorBox(error)));
}
