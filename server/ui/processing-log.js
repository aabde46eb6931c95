// The processing log: records a query could not decode or evaluate, as
// the KSQL_PROCESSING_LOG stream holds them; the queries kept running.

import { query, follow } from './api.js';
import { h, clear, table, number, clock, errorBox } from './dom.js';
import { kpi } from './analytics.js';

const KINDS = { 0: 'deserialization', 1: 'processing', 3: 'serialization' };

export function show(root) {
  const kpis = h('div', { class: 'grid kpis', id: 'log-kpis' });
  const byQuery = h('div', { class: 'panel', id: 'log-by-query' }, 'Loading…');
  const latest = h('div', { class: 'panel', id: 'log-latest' });
  clear(root,
    h('h1', {}, 'Processing log'),
    h('p', { class: 'subtitle' }, 'Records that failed to decode or evaluate, from the KSQL_PROCESSING_LOG stream. Each query that reads a bad record logs it once; the queries carry on.'),
    kpis,
    h('h2', {}, 'Latest'), latest,
    h('h2', {}, 'By query'), byQuery);

  async function load() {
    try {
      const [totals, queries, recent] = await Promise.all([
        query('SELECT COUNT(*) AS entries, COUNT(DISTINCT logger) AS queries, MAX(`time`) AS newest FROM KSQL_PROCESSING_LOG'),
        query('SELECT logger, COUNT(*) AS n FROM KSQL_PROCESSING_LOG GROUP BY logger ORDER BY n DESC, logger LIMIT 20'),
        query(`SELECT \`time\` AS at, logger, message->\`type\` AS kind,
                      COALESCE(message->deserializationError->errorMessage, message->recordProcessingError->errorMessage,
                               message->serializationError->errorMessage) AS error,
                      COALESCE(message->deserializationError->record, message->recordProcessingError->record) AS record
               FROM KSQL_PROCESSING_LOG ORDER BY \`time\` DESC LIMIT 15`),
      ]);
      const t = totals.objects[0] || {};
      clear(kpis,
        kpi('Entries', number(t.entries ?? 0)),
        kpi('Queries affected', number(t.queries ?? 0)),
        kpi('Newest', t.newest ? clock(t.newest) : '—'));
      clear(byQuery, table([
        { label: 'Query', value: (r) => r.logger.replace(/^processing\./, '') },
        { label: 'Entries', class: 'num', value: (r) => number(r.n) },
      ], queries.objects, { empty: 'No failed records.' }));
      clear(latest, table([
        { label: 'At', value: (r) => clock(r.at) },
        { label: 'Kind', value: (r) => h('span', { class: 'badge failed' }, KINDS[r.kind] || r.kind) },
        { label: 'Error', value: (r) => r.error },
        { label: 'Record', value: (r) => h('code', {}, (r.record || '').slice(0, 80)) },
      ], recent.objects, { empty: 'No failed records.' }));
    } catch (error) {
      clear(byQuery, errorBox(error));
    }
  }
  load();
  const stop = follow('KSQL_PROCESSING_LOG', load, 2000);
  return () => stop();
}
