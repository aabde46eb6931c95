// Talks to Sluice's HTTP API: pull queries (full SQL over the live
// projections), push queries, statements and server-sent change feeds.

/** Runs a pull query; resolves to {columns, types, rows, objects}. */
export async function query(sql) {
  const response = await fetch('/query-stream', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ sql, properties: {} }),
  });
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`${response.status}: ${text.slice(0, 300)}`);
  }
  if (!response.ok || !Array.isArray(body)) {
    throw new Error(body.message || `HTTP ${response.status}`);
  }
  const [header, ...rows] = body;
  const columns = header.columnNames.map((c) => c.toLowerCase());
  const objects = rows.map((row) => Object.fromEntries(columns.map((c, i) => [c, row[i]])));
  return { queryId: header.queryId, columns: header.columnNames, types: header.columnTypes, rows, objects };
}

/** Executes statements (CREATE, SHOW, DESCRIBE, ...) through POST /ksql. */
export async function ksql(statement) {
  const response = await fetch('/ksql', {
    method: 'POST',
    headers: { 'Content-Type': 'application/vnd.ksql.v1+json', Accept: 'application/vnd.ksql.v1+json' },
    body: JSON.stringify({ ksql: statement, streamsProperties: {} }),
  });
  const body = await response.json().catch(() => ({ message: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
  return body;
}

/**
 * Runs a push query (EMIT CHANGES), calling onHeader once and onRow per
 * row until stopped. Returns {stop(), done}.
 */
export function push(sql, { onHeader, onRow, onError }) {
  const controller = new AbortController();
  let queryId = null;
  const done = (async () => {
    try {
      const response = await fetch('/query-stream', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/vnd.ksqlapi.delimited.v1' },
        body: JSON.stringify({ sql, properties: {} }),
        signal: controller.signal,
      });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        throw new Error(body.message || `HTTP ${response.status}`);
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffered = '';
      let first = true;
      for (;;) {
        const { value, done: ended } = await reader.read();
        if (ended) break;
        buffered += decoder.decode(value, { stream: true });
        let newline;
        while ((newline = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, newline).trim();
          buffered = buffered.slice(newline + 1);
          if (!line) continue;
          const parsed = JSON.parse(line);
          if (first) {
            first = false;
            queryId = parsed.queryId;
            onHeader(parsed);
          } else if (Array.isArray(parsed)) {
            onRow(parsed);
          } else if (parsed.message || parsed.errorMessage) {
            throw new Error(parsed.message || parsed.errorMessage);
          }
        }
      }
    } catch (error) {
      if (error.name !== 'AbortError') onError(error);
    }
  })();
  return {
    done,
    stop() {
      if (queryId) {
        fetch('/close-query', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ queryId }),
        }).catch(() => {});
      }
      controller.abort();
    },
  };
}

/**
 * Follows a projection's changes over server-sent events; calls onChange
 * (debounced to at most one call per `every` ms). Returns a close function.
 */
export function follow(name, onChange, every = 1000) {
  const source = new EventSource(`/projections/${encodeURIComponent(name)}/changes`);
  let timer = null;
  let changes = 0;
  const fire = () => {
    timer = null;
    const n = changes;
    changes = 0;
    onChange(n);
  };
  const changed = () => {
    changes += 1;
    if (!timer) timer = setTimeout(fire, every);
  };
  source.addEventListener('row', changed);
  source.addEventListener('delete', changed);
  return () => {
    clearTimeout(timer);
    source.close();
  };
}

/** A SQL string literal. */
export function literal(value) {
  return `'${String(value).replaceAll("'", "''")}'`;
}
