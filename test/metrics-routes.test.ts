// The metrics plugin's extension points: another plugin's JSON routes (GET and state-changing POST/DELETE, with
// the token, the JSON-only and same-origin rules), `:param` segments, 405s, and fields added to API clients.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { startServer, type TestServer } from '../testing';
import { definePlugin } from '../core/plugin';
import { Type } from '../config/types';
import { httpListeners } from '../plugins/metrics';
import type {} from '../plugins/metrics/hooks';
import { HttpStatusError } from '../plugins/pkg/httpError';
import { catalogWith } from './helpers/catalog';

const TOKEN = 'a-token-of-sixteen-or-more';

/** A plugin with a counter it shows (GET), changes (POST) and resets (DELETE). */
const counter = definePlugin({
  name: 'counter',
  options: Type.Object({}),
  setup(api) {
    let value = 0;
    const m = api.hooksOf('metrics');
    if (m === undefined) return;
    m.routes.tap('counter', (t) => {
      t.add({ method: 'GET', path: '/api/counter', handler: () => ({ value }) });
      t.add({
        method: 'POST',
        path: '/api/counter/:step',
        handler: (req) => {
          const step = Number(req.params.step);
          if (!Number.isInteger(step)) throw new HttpStatusError(400, `step ${req.params.step} is not a whole number`);
          const by = (req.body as { times?: number } | undefined)?.times ?? 1;
          value += step * by;
          return { value };
        },
      });
      t.add({ method: 'DELETE', path: '/api/counter', handler: () => ({ value: (value = 0) }) });
      t.add({ method: 'GET', path: '/api/counter/broken', handler: () => { throw new Error('secret detail'); } });
    });
  },
});

const catalog = catalogWith(counter);

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown>;
}

function request(port: number, path: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { Host: `127.0.0.1:${port}`, ...(opts.headers ?? {}) };
    if (opts.body !== undefined) headers['Content-Length'] = String(Buffer.byteLength(opts.body));
    const req = http.request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) });
      });
    });
    req.on('error', reject);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

async function start(token: boolean): Promise<{ s: TestServer; port: number }> {
  const s = await startServer(
    `servers:
  - listen: [udp://127.0.0.1:0]
    plugins:
      - metrics: { listen: 127.0.0.1:0${token ? `, token: ${TOKEN}` : ''} }
      - counter
`,
    { catalog },
  );
  return { s, port: httpListeners(s.server.metrics.registry)[0].port };
}

const json = { 'Content-Type': 'application/json' };

describe('metrics: routes of other plugins', () => {
  test('GET, POST with a path parameter and a JSON body, DELETE; errors keep their status; 500s hide the cause', async () => {
    const { s, port } = await start(false);
    try {
      assert.deepEqual((await request(port, '/api/counter')).body, { value: 0 });
      assert.deepEqual((await request(port, '/api/counter/5', { method: 'POST', headers: json, body: '{"times":2}' })).body, { value: 10 });
      assert.deepEqual((await request(port, '/api/counter/1', { method: 'POST', headers: json })).body, { value: 11 });
      const bad = await request(port, '/api/counter/x', { method: 'POST', headers: json });
      assert.equal(bad.status, 400);
      assert.match(String(bad.body.error), /step x is not a whole number/);
      assert.deepEqual((await request(port, '/api/counter', { method: 'DELETE', headers: json })).body, { value: 0 });
      const wrong = await request(port, '/api/counter', { method: 'PUT', headers: json });
      assert.equal(wrong.status, 405);
      assert.equal(wrong.headers.allow, 'GET, DELETE');
      const broken = await request(port, '/api/counter/broken');
      assert.equal(broken.status, 500);
      assert.doesNotMatch(JSON.stringify(broken.body), /secret detail/);
      assert.equal((await request(port, '/api/nothing-here')).status, 404);
    } finally {
      await s.stop();
    }
  });

  test('a state change needs a JSON body type, a same-site Origin and, when set, the token', async () => {
    const { s, port } = await start(true);
    const auth = { Authorization: `Bearer ${TOKEN}` };
    try {
      assert.equal((await request(port, '/api/counter')).status, 401);
      assert.equal((await request(port, '/api/counter/1', { method: 'POST', headers: json })).status, 401);
      // A cross-site HTML form can send only simple content types: refused before the handler runs.
      const form = await request(port, '/api/counter/1', { method: 'POST', headers: { ...auth, 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'times=3' });
      assert.equal(form.status, 415);
      const cross = await request(port, '/api/counter/1', { method: 'POST', headers: { ...auth, ...json, Origin: 'http://evil.example' } });
      assert.equal(cross.status, 403);
      const notJson = await request(port, '/api/counter/1', { method: 'POST', headers: { ...auth, ...json }, body: '{' });
      assert.equal(notJson.status, 400);
      assert.deepEqual((await request(port, '/api/counter', { headers: auth })).body, { value: 0 }, 'no refused request changed anything');
      const ok = await request(port, '/api/counter/2', { method: 'POST', headers: { ...auth, ...json, Origin: `http://127.0.0.1:${port}` } });
      assert.deepEqual(ok.body, { value: 2 });
    } finally {
      await s.stop();
    }
  });

  test('a route added twice is logged as an error naming it; the first one serves', async () => {
    const twice = definePlugin({
      name: 'twice',
      options: Type.Object({}),
      setup(api) {
        api.hooksOf('metrics')?.routes.tap('twice', (t) => {
          t.add({ method: 'GET', path: '/api/twice', handler: () => 1 });
          t.add({ method: 'GET', path: '/api/twice', handler: () => 2 });
        });
      },
    });
    const cat = catalogWith(twice);
    const s = await startServer(`servers:\n  - listen: [udp://127.0.0.1:0]\n    plugins:\n      - metrics: { listen: 127.0.0.1:0 }\n      - twice\n`, { catalog: cat });
    try {
      assert.ok(s.logs.some((l) => /GET \/api\/twice is added twice; the first one is kept/.test(l)), s.logs.join('\n'));
      const port = httpListeners(s.server.metrics.registry)[0].port;
      assert.equal((await request(port, '/api/twice')).body as unknown, 1);
      assert.equal((await s.query('example.org')).rcode, 'SERVFAIL', 'the DNS side runs');
    } finally {
      await s.stop();
    }
  });

  test('dashboard streams are bounded, with a gauge of open ones and a counter of refused ones', async () => {
    const { s, port } = await start(false);
    const open: http.ClientRequest[] = [];
    try {
      const openStream = (): Promise<number> =>
        new Promise((resolve, reject) => {
          const req = http.request({ host: '127.0.0.1', port, path: '/api/stream', headers: { Host: `127.0.0.1:${port}` }, agent: false }, (res) => {
            if (res.statusCode !== 200) res.resume();
            resolve(res.statusCode ?? 0);
          });
          req.on('error', reject);
          req.end();
          open.push(req);
        });
      const statuses: number[] = [];
      for (let i = 0; i < 17; i++) statuses.push(await openStream());
      assert.deepEqual(statuses, [...Array(16).fill(200), 503]);
      const text = await s.server.metrics.registry.metrics();
      assert.match(text, /^codexdns_http_dashboard_streams 16$/m);
      assert.match(text, /^codexdns_http_dashboard_streams_closed_total\{reason="refused"\} 1$/m);
    } finally {
      for (const r of open) r.destroy();
      await s.stop();
    }
  });
});
