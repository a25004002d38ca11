// metrics plugin: Prometheus exposition (values that match the engine, names linted against Prometheus
// conventions), the JSON API's shapes and values, access control (token, cookie, Host), the listener across
// reloads and shutdown, and the collectors against prom-client's own.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import * as dnsPacket from 'dns-packet';
import * as promClientIndex from 'prom-client';
import { Histogram, Registry } from 'prom-client';
import { execFileSync } from 'node:child_process';
import * as promClient from '../core/promClient';
import { startFakeUpstream, startServer, type TestServer } from '../testing';
import { definePlugin, type AnyPluginDefinition } from '../core/plugin';
import { Type } from '../config/types';
import { DnsResponse } from '../core/response';
import type { PluginCatalog } from '../config/load';
import { builtinCatalog } from '../server/catalog';
import { FastHistogram, TIME_BUCKETS, httpListeners } from '../plugins/metrics';

// ------------------------------------------------------------------------------------------------ helpers

/** Answers every query: NXDOMAIN for names starting with `nx`, otherwise one A record. */
const answerer = definePlugin({
  name: 'answerer',
  options: Type.Object({}),
  setup(api) {
    api.hooks.query.tap('answerer', (ctx) => {
      const q = ctx.message.questions?.[0];
      const nx = ctx.qname.startsWith('nx');
      return DnsResponse.fromPacket({
        type: 'response',
        id: ctx.query.id,
        flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (nx ? 3 : 0),
        questions: q ? [q] : [],
        answers: nx || !q || q.type !== 'A' ? [] : [{ name: q.name, type: 'A', ttl: 300, data: '192.0.2.1' }],
      });
    });
  },
});

const catalog: PluginCatalog = {
  get: (name) => (name === 'answerer' ? (answerer as unknown as AnyPluginDefinition) : builtinCatalog.get(name)),
  names: () => [...builtinCatalog.names(), 'answerer'],
};

interface HttpReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: <T = Record<string, unknown>>() => T;
}

function request(port: number, path: string, opts: { method?: string; headers?: Record<string, string>; body?: string; host?: string } = {}): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { Host: opts.host ?? `127.0.0.1:${port}`, ...(opts.headers ?? {}) };
    if (opts.body !== undefined) headers['Content-Length'] = String(Buffer.byteLength(opts.body));
    const req = http.request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: <T>() => JSON.parse(text) as T });
      });
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`timeout on ${path}`)));
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

function metricsPort(s: TestServer): number {
  const l = httpListeners(s.server.metrics.registry);
  assert.equal(l.length, 1, 'one metrics listener');
  return l[0].port;
}

interface Series {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text format: families (name → type, help) and samples. */
function parseExposition(text: string): { types: Map<string, string>; helps: Map<string, string>; series: Series[] } {
  const types = new Map<string, string>();
  const helps = new Map<string, string>();
  const series: Series[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (m) {
      types.set(m[1], m[2]);
      continue;
    }
    m = /^# HELP (\S+) (.*)$/.exec(line);
    if (m) {
      helps.set(m[1], m[2]);
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparseable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
      let l: RegExpExecArray | null;
      while ((l = re.exec(m[2])) !== null) labels[l[1]] = l[2];
    }
    series.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return { types, helps, series };
}

function sum(series: Series[], name: string, match: Record<string, string> = {}): number {
  return series.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
}

async function scrape(port: number, headers: Record<string, string> = {}): Promise<ReturnType<typeof parseExposition>> {
  const r = await request(port, '/metrics', { headers });
  assert.equal(r.status, 200, r.text);
  assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return parseExposition(r.text);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const BASIC = (metrics = '{ listen: "127.0.0.1:0" }', extra = ''): string => `
servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
      - acl: { allow: [127.0.0.0/8] }
      - metrics: ${metrics}
      - cache: {}
${extra}      - answerer: {}
`;

// --------------------------------------------------------------------------------------------- Prometheus

describe('Prometheus /metrics', () => {
  test('after N queries the request counters read N; responses by rcode and plugin; durations; sizes; per-plugin times', async () => {
    const s = await startServer(BASIC(), { catalog });
    try {
      const port = metricsPort(s);
      const N = 40;
      for (let i = 0; i < N; i++) {
        const name = i % 4 === 3 ? `nx${i % 2}.example` : `h${i % 5}.example`;
        await s.query(name, 'A', { tcp: i % 10 === 0 });
      }
      await s.query('h1.example', 'AAAA');
      await s.query('h1.example', 'CAA'); // not a monitored type: counted as `other`
      const total = N + 2;
      const { series } = await scrape(port);
      assert.equal(sum(series, 'codexdns_dns_requests_total'), total, 'one request counted per query');
      assert.equal(sum(series, 'codexdns_dns_requests_total', { server: 'block0', zone: '.', family: '1' }), total);
      assert.equal(sum(series, 'codexdns_dns_requests_total', { proto: 'tcp' }), N / 10);
      assert.equal(sum(series, 'codexdns_dns_requests_total', { type: 'A' }), N);
      assert.equal(sum(series, 'codexdns_dns_requests_total', { type: 'AAAA' }), 1);
      assert.equal(sum(series, 'codexdns_dns_requests_total', { type: 'other' }), 1);
      assert.equal(sum(series, 'codexdns_dns_responses_total'), total);
      assert.equal(sum(series, 'codexdns_dns_responses_total', { rcode: 'NXDOMAIN' }), N / 4);
      const hits = sum(series, 'codexdns_dns_responses_total', { plugin: 'cache' });
      const answered = sum(series, 'codexdns_dns_responses_total', { plugin: 'answerer' });
      assert.equal(hits + answered, total);
      // 5 positive names (a second time over TCP at most), the 10 NXDOMAINs (no SOA: not cacheable), the AAAA
      // and the CAA go below the cache; the other 20+ are hits.
      assert.ok(answered >= 17 && answered <= 22, `answerer answered ${answered}`);
      assert.equal(sum(series, 'codexdns_dns_responses_total', { rcode: 'NXDOMAIN', plugin: 'answerer' }), N / 4);
      assert.equal(sum(series, 'codexdns_dns_request_duration_seconds_count'), total);
      assert.equal(sum(series, 'codexdns_dns_request_duration_seconds_bucket', { le: '+Inf' }), total);
      assert.ok(sum(series, 'codexdns_dns_request_duration_seconds_sum') > 0);
      assert.equal(sum(series, 'codexdns_dns_request_size_bytes_count'), total);
      assert.equal(sum(series, 'codexdns_dns_response_size_bytes_count'), total);
      // CoreDNS's buckets, exactly.
      const les = series.filter((x) => x.name === 'codexdns_dns_request_duration_seconds_bucket' && x.labels.type === 'A').map((x) => x.labels.le);
      assert.deepEqual(les, [...TIME_BUCKETS.map(String), '+Inf']);
      assert.deepEqual(
        series.filter((x) => x.name === 'codexdns_dns_request_size_bytes_bucket' && x.labels.proto === 'udp').map((x) => x.labels.le),
        ['0', '100', '200', '300', '400', '511', '1023', '2047', '4095', '8291', '16000', '32000', '48000', '64000', '+Inf'],
      );
      // Every tap of the chain is timed, once per call.
      assert.equal(sum(series, 'codexdns_plugin_duration_seconds_count', { plugin: 'acl', hook: 'query' }), total);
      assert.equal(sum(series, 'codexdns_plugin_duration_seconds_count', { plugin: 'cache', hook: 'query' }), total);
      assert.equal(sum(series, 'codexdns_plugin_duration_seconds_count', { plugin: 'answerer', hook: 'query' }), answered);
      // The Node process metrics.
      assert.ok(series.some((x) => x.name === 'process_cpu_seconds_total'));
      assert.ok(series.some((x) => x.name === 'process_resident_memory_bytes'));
      assert.ok(series.some((x) => x.name === 'nodejs_eventloop_lag_seconds'));
      assert.equal(sum(series, 'codexdns_build_info'), 1);
      // The wire layer: a malformed packet never reaches the chain but is counted.
      await s.exchange(Buffer.from([1, 2, 3]));
      const again = await scrape(port);
      assert.equal(sum(again.series, 'codexdns_dns_packets_dropped_total', { reason: 'short' }), 1);
      assert.equal(sum(again.series, 'codexdns_dns_requests_total'), total, 'the dropped packet is not a request');
    } finally {
      await s.stop();
    }
  });

  test('no client address is ever a label, from IPv4 or IPv6 or many clients', async () => {
    const s = await startServer(
      `
servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0, "udp://[::1]:0"]
    plugins:
      - metrics: { listen: "127.0.0.1:0" }
      - cache: {}
      - clienttrack: { flush: 100ms }
      - answerer: {}
`,
      { catalog },
    );
    try {
      const port = metricsPort(s);
      const clients: string[] = [];
      for (let i = 0; i < 12; i++) clients.push(`127.0.${10 + i}.${20 + i}`);
      for (const from of clients) await s.query('a.example', 'A', { from });
      const v6port = s.server.listenerPorts().find((l) => l.host === '::1')!.port;
      await s.query('a.example', 'A', { host: '::1', port: v6port });
      const { series } = await scrape(port);
      assert.equal(sum(series, 'codexdns_dns_requests_total', { family: '2' }), 1);
      for (const x of series) {
        for (const [k, v] of Object.entries(x.labels)) {
          assert.ok(!/^(client|ip|address|addr|source|src|remote)$/i.test(k), `${x.name} has a client label ${k}`);
          assert.ok(!clients.includes(v) && v !== '::1' && v !== '127.0.0.1', `${x.name}{${k}="${v}"} carries a client address`);
        }
      }
    } finally {
      await s.stop();
    }
  });

  test('names follow Prometheus conventions (linted over a chain with every built-in plugin)', async () => {
    const names = builtinCatalog.names();
    const lines: string[] = [];
    if (names.includes('acl')) lines.push('      - acl: { allow: [127.0.0.0/8] }');
    lines.push('      - metrics: { listen: "127.0.0.1:0" }');
    for (const n of ['log', 'breaker', 'ratelimit']) if (names.includes(n)) lines.push(`      - ${n}: {}`);
    if (names.includes('cache')) lines.push('      - cache: { prefetch: {}, serve_stale: {} }');
    lines.push('      - clienttrack: { flush: 100ms, priority: {} }');
    // dhcp only (no lease files): no probe leaves the machine (rdns would ask the default gateway).
    if (names.includes('discovery')) lines.push('      - discovery: { methods: [dhcp] }');
    lines.push('      - forward: { to: [127.0.0.1:9], timeout: 100ms, deadline: 200ms }');
    const s = await startServer(`\nservers:\n  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]\n    plugins:\n${lines.join('\n')}\n`, { catalog });
    try {
      const port = metricsPort(s);
      await s.query('x.example', 'A');
      await s.query('x.example', 'A');
      await sleep(300);
      const { types, helps, series } = await scrape(port);
      assert.ok(types.size > 20, `${types.size} metric families`);
      const problems: string[] = [];
      // prom-client's process metrics keep their standard names (Node.js dashboards use them, some of them gauges
      // named _total by prom-client's choice): they are only checked to be process_* or nodejs_*.
      for (const [name, type] of types) {
        const own = name.startsWith('codexdns_');
        if (!own) {
          if (!/^(process|nodejs)_/.test(name)) problems.push(`${name}: not codexdns_ (and not a process metric)`);
          continue;
        }
        if (!/^[a-z][a-z0-9]*(_[a-z0-9]+)*$/.test(name)) problems.push(`${name}: not snake_case`);
        if (name.startsWith('codexdns_codexdns')) problems.push(`${name}: prefix twice`);
        if (!/^codexdns_[a-z0-9]+_[a-z0-9_]+$/.test(name)) problems.push(`${name}: no subsystem`);
        if (type === 'counter' && !name.endsWith('_total')) problems.push(`${name}: a counter must end in _total`);
        if (type !== 'counter' && name.endsWith('_total')) problems.push(`${name}: only counters end in _total`);
        if (/_(ms|msec|millis|milliseconds|us|usec|microseconds|ns|nanoseconds|minutes|hours|days)(_total)?$/.test(name)) problems.push(`${name}: time must be in seconds`);
        if (/_(kb|kib|mb|mib|gb|kilobytes|megabytes|bits)(_total)?$/.test(name)) problems.push(`${name}: sizes in bytes`);
        if (/(duration|latency|elapsed|uptime|_time)$/.test(name.replace(/_total$/, ''))) problems.push(`${name}: a time needs the _seconds unit`);
        if (/_percent(age)?$/.test(name)) problems.push(`${name}: ratios are 0..1 (_ratio), not percent`);
        if (type === 'histogram' && /duration|latency|time/.test(name) && !name.endsWith('_seconds')) problems.push(`${name}: a time histogram ends in _seconds`);
        if (type === 'histogram' && /size/.test(name) && !/_(bytes|size)$/.test(name)) problems.push(`${name}: a size histogram ends in _bytes (or counts things: _size)`);
        if (!helps.get(name)) problems.push(`${name}: no help text`);
      }
      for (const x of series) {
        for (const k of Object.keys(x.labels)) {
          if (!/^[a-z][a-z0-9_]*$/.test(k)) problems.push(`${x.name}: label ${k} not snake_case`);
          if (k.startsWith('__')) problems.push(`${x.name}: reserved label ${k}`);
        }
      }
      assert.deepEqual(problems, []);
      // CoreDNS's names, under our prefix, so a CoreDNS board ports by changing the prefix.
      for (const n of ['dns_requests_total', 'dns_responses_total', 'dns_request_duration_seconds', 'dns_request_size_bytes', 'dns_response_size_bytes']) {
        assert.ok(types.has(`codexdns_${n}`), `codexdns_${n} is exported`);
      }
      assert.equal(types.get('codexdns_dns_requests_total'), 'counter');
      assert.equal(types.get('codexdns_dns_request_duration_seconds'), 'histogram');
      assert.equal(types.get('codexdns_plugin_duration_seconds'), 'histogram');
      const labelsOf = (n: string): string[] => Object.keys(series.find((x) => x.name === n)?.labels ?? {}).sort();
      assert.deepEqual(labelsOf('codexdns_dns_requests_total'), ['family', 'proto', 'server', 'type', 'zone']);
      assert.deepEqual(labelsOf('codexdns_dns_responses_total'), ['plugin', 'rcode', 'server', 'zone']);
      assert.deepEqual(labelsOf('codexdns_dns_request_duration_seconds_count'), ['server', 'type', 'zone']);
    } finally {
      await s.stop();
    }
  });

  test('plugin_timing: false leaves the tap timing slots unbound', async () => {
    const s = await startServer(BASIC('{ listen: "127.0.0.1:0", plugin_timing: false }'), { catalog });
    try {
      await s.query('a.example', 'A');
      const { series } = await scrape(metricsPort(s));
      assert.equal(sum(series, 'codexdns_plugin_duration_seconds_count'), 0);
      assert.equal(sum(series, 'codexdns_dns_requests_total'), 1);
      assert.ok(s.server.metrics.registry.getSingleMetric('codexdns_plugin_duration_seconds') !== undefined);
    } finally {
      await s.stop();
    }
  });

  test('several zones in a block: one zone label each, as CoreDNS writes them', async () => {
    const s = await startServer(
      `
servers:
  - listen: [udp://127.0.0.1:0]
    zones: [example.org, example.com]
    plugins:
      - metrics: { listen: "127.0.0.1:0" }
      - answerer: {}
`,
      { catalog },
    );
    try {
      await s.query('a.example.org', 'A');
      await s.query('b.example.com', 'A');
      await s.query('c.example.com', 'MX');
      const { series } = await scrape(metricsPort(s));
      assert.equal(sum(series, 'codexdns_dns_requests_total', { zone: 'example.org.' }), 1);
      assert.equal(sum(series, 'codexdns_dns_requests_total', { zone: 'example.com.' }), 2);
      assert.equal(sum(series, 'codexdns_dns_requests_total', { zone: 'example.com.', type: 'MX' }), 1);
    } finally {
      await s.stop();
    }
  });

  test('FastHistogram exposes exactly what a prom-client Histogram does for the same observations', async () => {
    const a = new Registry();
    const b = new Registry();
    const ours = new FastHistogram('t_seconds', 'help', ['x'], TIME_BUCKETS);
    a.registerMetric(ours as never);
    const theirs = new Histogram({ name: 't_seconds', help: 'help', labelNames: ['x'], buckets: [...TIME_BUCKETS], registers: [b] });
    const child = ours.child(['1']);
    const values = [0, 0.00025, 0.0002500001, 0.001, 0.5, 3, 8.192, 9, 100, 1e-9];
    for (const v of values) {
      child.observe(v);
      theirs.labels('1').observe(v);
    }
    assert.equal(await a.metrics(), await b.metrics());
  });
});

// ------------------------------------------------------------------------------------------------- JSON API

describe('JSON API', () => {
  test('queue, goroutines, clients (paging, sorting, search), one client, health and ready match the engine', async () => {
    const s = await startServer(
      BASIC('{ listen: "127.0.0.1:0" }', '      - clienttrack: { flush: 50ms, priority: { high: 100, low: 100 } }\n'),
      { catalog },
    );
    try {
      const port = metricsPort(s);
      const clients = ['127.0.3.1', '127.0.3.2', '127.0.3.3', '127.0.4.10'];
      // 127.0.3.1: 4 queries, .2: 3, .3: 2, 127.0.4.10: 1.
      for (let i = 0; i < clients.length; i++) for (let k = 0; k < clients.length - i; k++) await s.query(`q${k}.example`, 'A', { from: clients[i] });
      await waitFor('tracking written', async () => {
        const q = (await request(port, '/api/metrics/queue')).json<{ processed: number; writer: { queriesWritten: number } }>();
        return q.processed === 10 && q.writer.queriesWritten === 10;
      });

      const q = (await request(port, '/api/metrics/queue')).json<Record<string, any>>();
      assert.equal(q.enabled, true);
      assert.equal(q.server, 'block0');
      assert.equal(q.priority, true);
      assert.deepEqual(Object.keys(q.high).sort(), ['capacity', 'depth', 'dropped', 'enqueued']);
      assert.equal(q.high.capacity, 100);
      assert.equal(q.low.capacity, 100);
      assert.equal(q.submitted, 10);
      assert.equal(q.processed, 10);
      assert.equal(q.dropped, 0);
      assert.equal(typeof q.processingRate, 'number');
      assert.equal(q.enqueues, q.high.enqueued + q.low.enqueued);
      assert.equal(q.workers.total, 100);
      assert.equal(q.submitted, q.processed + q.failed + q.dropped + q.queued + q.inFlight);
      for (const k of ['batch', 'writeLatencyMs', 'writer', 'clients']) assert.ok(q[k], k);
      assert.equal(q.clients.indexed, 4);

      const g = (await request(port, '/api/metrics/goroutines')).json<Record<string, any>>();
      assert.deepEqual(Object.keys(g.categories).sort(), ['discovery_workers', 'forwards_in_flight', 'queries_in_flight', 'tcp_connections', 'tracking_workers']);
      assert.equal(g.categories.tracking_workers.enabled, true);
      assert.equal(g.categories.tracking_workers.capacity, 100);
      assert.equal(g.categories.discovery_workers.enabled, false, 'no discovery in this chain');
      assert.equal(g.categories.forwards_in_flight.enabled, false, 'no forward in this chain');
      assert.equal(typeof g.total, 'number');

      const d = (await request(port, '/api/metrics/discovery')).json<Record<string, any>>();
      assert.equal(d.enabled, false);

      const list = (await request(port, '/api/clients?sort=query_count&order=desc&limit=2')).json<Record<string, any>>();
      assert.equal(list.enabled, true);
      assert.equal(list.total, 4);
      assert.deepEqual(list.clients.map((c: { ip: string }) => c.ip), ['127.0.3.1', '127.0.3.2']);
      assert.deepEqual(list.clients.map((c: { queryCount: number }) => c.queryCount), [4, 3]);
      assert.deepEqual(Object.keys(list.clients[0]).sort(), ['discoveredAt', 'discovering', 'firstSeen', 'hostname', 'ip', 'lastError', 'lastSeen', 'mac', 'method', 'queryCount', 'vendor']);
      const page2 = (await request(port, '/api/clients?sort=query_count&order=desc&limit=2&offset=2')).json<Record<string, any>>();
      assert.deepEqual(page2.clients.map((c: { ip: string }) => c.ip), ['127.0.3.3', '127.0.4.10']);
      const asc = (await request(port, '/api/clients?sort=ip&order=asc')).json<Record<string, any>>();
      assert.deepEqual(asc.clients.map((c: { ip: string }) => c.ip), ['127.0.3.1', '127.0.3.2', '127.0.3.3', '127.0.4.10']);
      const found = (await request(port, '/api/clients?search=0.4.')).json<Record<string, any>>();
      assert.equal(found.total, 1);
      assert.equal(found.clients[0].ip, '127.0.4.10');
      assert.equal((await request(port, '/api/clients?sort=password')).status, 400);
      assert.equal((await request(port, '/api/clients?order=sideways')).status, 400);
      assert.equal((await request(port, '/api/clients?limit=-1')).status, 400);

      const one = await request(port, '/api/clients/127.0.3.2');
      assert.equal(one.status, 200);
      assert.equal(one.json<{ queryCount: number }>().queryCount, 3);
      assert.equal((await request(port, '/api/clients/127.9.9.9')).status, 404);

      const h = await request(port, '/health');
      assert.equal(h.status, 200);
      const hj = h.json<Record<string, any>>();
      assert.equal(hj.status, 'ok');
      assert.equal(hj.ready, true);
      for (const part of ['dns', 'storage', 'tracking', 'discovery', 'breaker', 'forward']) assert.ok(hj.parts[part]?.state, part);
      assert.equal(hj.parts.storage.state, 'up');
      assert.equal(typeof hj.parts.storage.latencyMs, 'number');
      assert.equal(hj.parts.tracking.state, 'up');
      assert.equal(hj.parts.forward.state, 'disabled');

      const r = await request(port, '/ready');
      assert.equal(r.status, 200);
      assert.deepEqual(r.json(), { ready: true });
      assert.equal((await request(port, '/nope')).status, 404);
      assert.equal((await request(port, '/api/metrics/queue', { method: 'DELETE' })).status, 405);
    } finally {
      await s.stop();
    }
  });

  test('a forced tracking drop shows in the queue metrics; a database outage leaves /ready at 200 and /health degraded', async () => {
    // The database cannot be opened, so the tracker holds its jobs while it waits for the client index: one
    // worker, a queue of 5, 20 queries → exactly 15 dropped.
    const s = await startServer(
      BASIC('{ listen: "127.0.0.1:0" }', '      - clienttrack: { workers: 1, queue: 5, index_wait: 60s }\n') +
        'storage: { client: sqlite3, connection: { filename: /proc/codexdns-no-such-dir/db.sqlite } }\n',
      { catalog },
    );
    try {
      const port = metricsPort(s);
      await Promise.all(Array.from({ length: 20 }, (_, i) => s.query(`d${i}.example`, 'A')));
      const q = (await request(port, '/api/metrics/queue')).json<Record<string, any>>();
      assert.equal(q.submitted, 20);
      assert.equal(q.dropped, 15);
      assert.equal(q.high.dropped + q.low.dropped, 15);
      assert.equal(q.queued, 5);
      assert.equal(q.processed, 0);
      const { series } = await scrape(port);
      assert.equal(sum(series, 'codexdns_tracking_dropped_total'), 15, 'the Prometheus counter agrees');
      assert.equal(sum(series, 'codexdns_dns_requests_total'), 20, 'every query was answered and counted');

      const ready = await request(port, '/ready');
      assert.equal(ready.status, 200, 'a database outage does not make a working DNS server unready');
      const h = await request(port, '/health');
      assert.equal(h.status, 200);
      const hj = h.json<Record<string, any>>();
      assert.equal(hj.status, 'degraded');
      assert.equal(hj.parts.dns.state, 'up');
      assert.equal(hj.parts.storage.state, 'down');
      assert.match(hj.parts.storage.error, /codexdns-no-such-dir/);
      assert.equal(hj.parts.tracking.state, 'degraded');
      assert.equal((await request(port, '/api/clients')).status, 503);
    } finally {
      await s.stop();
    }
  });

  test('discovery and its breakers: counts, per-method figures, names in the client list, an open breaker in /health', async () => {
    // A resolver for discovery's rdns that names every client (pc-1-9.home.arpa for 127.0.9.1), until it goes silent.
    const resolver = await startFakeUpstream({
      tcp: false,
      answer: (q) => {
        const o = q.name.split('.');
        return { aa: true, answers: [{ name: q.name, type: 'PTR', ttl: 60, data: `pc-${o[0]}-${o[1]}.home.arpa` }] };
      },
    });
    const s = await startServer(
      BASIC(
        '{ listen: "127.0.0.1:0" }',
        `      - breaker: { discovery: { failures: 2, reset: 60s } }
      - clienttrack: { flush: 50ms }
      - discovery: { methods: [rdns], timeout: 200ms, rdns: { resolvers: ["${resolver.address}"] } }
`,
      ),
      { catalog },
    );
    try {
      const port = metricsPort(s);
      const before = (await request(port, '/api/metrics/discovery')).json<Record<string, any>>();
      assert.equal(before.enabled, true);
      assert.deepEqual(before.breaker, { rdns: 'closed' }, 'a method that has not run yet reads closed');
      for (const c of ['127.0.9.1', '127.0.9.2', '127.0.9.3']) await s.query('n.example', 'A', { from: c });
      await waitFor('three clients named', async () => {
        const l = (await request(port, '/api/clients?search=home.arpa')).json<{ total: number }>();
        return l.total === 3;
      });
      const d = (await request(port, '/api/metrics/discovery')).json<Record<string, any>>();
      assert.equal(d.server, 'block0');
      assert.equal(d.total, 3);
      assert.equal(d.succeeded, 3);
      assert.equal(d.failed, 0);
      assert.equal(d.announced, 3);
      for (const k of ['rateLimited', 'breakerRejected', 'dropped', 'discovering', 'ratePerSecond']) assert.equal(typeof d[k], 'number', k);
      assert.equal(d.latencyMs.count, 3);
      assert.ok(d.latencyMs.min !== null && d.latencyMs.min <= d.latencyMs.avg && d.latencyMs.avg <= d.latencyMs.max);
      assert.deepEqual(Object.keys(d.methods), ['rdns']);
      assert.equal(d.methods.rdns.attempts, 3);
      assert.equal(d.methods.rdns.succeeded, 3);
      assert.equal(d.methods.rdns.breaker, 'closed');
      assert.deepEqual(d.workers, { total: 10, busy: 0 });
      assert.deepEqual(Object.keys(d.queue).sort(), ['capacity', 'depth']);
      const one = (await request(port, '/api/clients/127.0.9.2')).json<Record<string, any>>();
      assert.equal(one.hostname, 'pc-2-9.home.arpa');
      assert.equal(one.method, 'rdns');
      assert.equal(one.discovering, false);
      assert.ok(one.discoveredAt);
      const byName = (await request(port, '/api/clients?search=PC-3')).json<Record<string, any>>();
      assert.deepEqual(byName.clients.map((c: { ip: string }) => c.ip), ['127.0.9.3'], 'search by name, any case');
      const g = (await request(port, '/api/metrics/goroutines')).json<Record<string, any>>();
      assert.deepEqual(g.categories.discovery_workers, { running: 0, capacity: 10, enabled: true });
      let h = (await request(port, '/health')).json<Record<string, any>>();
      assert.equal(h.parts.discovery.state, 'up');
      assert.equal(h.parts.breaker.state, 'up');

      // The resolver goes silent: two timeouts open the rdns breaker.
      resolver.silent = true;
      for (const c of ['127.0.9.4', '127.0.9.5', '127.0.9.6']) await s.query('n.example', 'A', { from: c });
      await waitFor('the rdns breaker open', async () => (await request(port, '/api/metrics/discovery')).json<{ breaker: Record<string, string> }>().breaker.rdns === 'open');
      h = (await request(port, '/health')).json<Record<string, any>>();
      assert.equal(h.status, 'degraded');
      assert.equal(h.parts.breaker.state, 'degraded');
      assert.deepEqual(h.parts.breaker.open, ['rdns']);
      assert.equal(h.parts.discovery.state, 'degraded');
      assert.equal((await request(port, '/ready')).status, 200);
      const { series } = await scrape(port);
      assert.equal(sum(series, 'codexdns_breaker_state', { method: 'rdns' }), 1, 'the breaker plugin exports the same state');
    } finally {
      await s.stop();
      await resolver.stop();
    }
  });

  test('without clienttrack the client endpoints say so, and storage is never opened', async () => {
    const s = await startServer(BASIC() + 'storage: { client: sqlite3, connection: { filename: /proc/codexdns-no-such-dir/db.sqlite } }\n', { catalog });
    try {
      const port = metricsPort(s);
      const list = (await request(port, '/api/clients')).json<Record<string, any>>();
      assert.equal(list.enabled, false);
      assert.deepEqual(list.clients, []);
      assert.equal((await request(port, '/api/clients/127.0.0.1')).status, 404);
      assert.deepEqual((await request(port, '/api/metrics/queue')).json(), { enabled: false });
      const h = (await request(port, '/health')).json<Record<string, any>>();
      assert.equal(h.parts.storage.state, 'unused');
      assert.equal(h.parts.tracking.state, 'disabled');
      assert.equal(h.status, 'ok');
    } finally {
      await s.stop();
    }
  });

  test('the dashboard data: history of samples with every series, and a stream of server-sent events', async () => {
    const s = await startServer(
      BASIC('{ listen: "127.0.0.1:0", interval: 200ms }', '      - clienttrack: { flush: 50ms, priority: {} }\n'),
      { catalog },
    );
    try {
      const port = metricsPort(s);
      const stop = Date.now() + 1500;
      let n = 0;
      while (Date.now() < stop) {
        await s.query(`s${n % 3}.example`, 'A', { from: `127.0.5.${1 + (n % 4)}` });
        n++;
        await sleep(5);
      }
      const d = (await request(port, '/api/dashboard')).json<Record<string, any>>();
      assert.equal(d.intervalMs, 200);
      assert.ok(d.samples.length >= 3, `${d.samples.length} samples`);
      const last = d.samples[d.samples.length - 1];
      assert.deepEqual(Object.keys(last).sort(), ['breaker', 'cacheHitRatio', 'discovery', 'processingRate', 'qps', 'queue', 't', 'tasks']);
      assert.ok(d.samples.some((x: { qps: number }) => x.qps > 0));
      assert.ok(d.samples.some((x: { cacheHitRatio: number | null }) => x.cacheHitRatio !== null && x.cacheHitRatio > 0.5));
      assert.deepEqual(Object.keys(last.queue).sort(), ['high', 'low']);
      assert.equal(typeof last.processingRate, 'number');
      assert.deepEqual(Object.keys(last.tasks).sort(), ['discovery', 'forwards', 'queries', 'tcp', 'tracking']);
      assert.equal(last.discovery, null);
      assert.equal(last.breaker, null);
      assert.equal(d.clients.enabled, true);

      // The stream: a sample event within two intervals.
      const events = await new Promise<string>((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/api/stream', headers: { Host: `localhost:${port}` }, agent: false }, (res) => {
          assert.equal(res.statusCode, 200);
          assert.match(String(res.headers['content-type']), /^text\/event-stream/);
          let buf = '';
          res.on('data', (c: Buffer) => {
            buf += c.toString();
            if (/event: sample\ndata: \{.*\}\n\n/.test(buf)) {
              req.destroy();
              resolve(buf);
            }
          });
        });
        req.on('error', (e) => (e.message.includes('socket hang up') ? undefined : reject(e)));
        setTimeout(() => reject(new Error('no sample event')), 3000).unref();
      });
      const data = JSON.parse(/event: sample\ndata: (\{.*\})\n\n/.exec(events)![1]) as { qps: number };
      assert.equal(typeof data.qps, 'number');
    } finally {
      await s.stop();
    }
  });
});

// --------------------------------------------------------------------------------------------------- access

describe('access control', () => {
  test('a non-loopback listen without a token is a startup error at the option', async () => {
    await assert.rejects(
      startServer(BASIC('{ listen: "0.0.0.0:0" }'), { catalog }),
      (err: Error) => /Corefile\.yaml:\d+:\d+ plugin metrics: option token: listen 0\.0\.0\.0:0 is not a loopback address/.test(err.message),
    );
    await assert.rejects(startServer(BASIC('{ listen: "[::]:0" }'), { catalog }), /option token/);
    await assert.rejects(startServer(BASIC('{ listen: "nas:9153" }'), { catalog }), /option listen: nas:9153: nas is not an IP address/);
    await assert.rejects(startServer(BASIC('{ listen: "127.0.0.1:0", token: short }'), { catalog }), /token/);
    await assert.rejects(startServer(BASIC('{ listen: "127.0.0.1:0", interval: 5s }'), { catalog }), /option interval/);
  });

  test('the Host header must name this server: a DNS-rebinding page gets nothing', async () => {
    const s = await startServer(BASIC('{ listen: "127.0.0.1:0", hosts: [dns.home.arpa] }'), { catalog });
    try {
      const port = metricsPort(s);
      for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'localhost', `dns.home.arpa:${port}`, 'DNS.home.arpa.']) {
        assert.equal((await request(port, '/api/metrics/queue', { host })).status, 200, host);
      }
      for (const host of [`evil.example:${port}`, 'attacker.test', `192.168.1.2:${port}`, `127.0.0.1.evil.example:${port}`]) {
        const r = await request(port, '/api/metrics/queue', { host });
        assert.equal(r.status, 403, host);
        assert.deepEqual(r.json(), { error: 'host not allowed' });
        assert.equal((await request(port, '/metrics', { host })).status, 403);
        assert.equal((await request(port, '/', { host })).status, 403);
      }
    } finally {
      await s.stop();
    }
  });

  test('with a token: bearer for /metrics and the API, a login form that sets an HttpOnly cookie, never a token in a URL', async () => {
    const token = 'correct-horse-battery-staple-42';
    const s = await startServer(BASIC(`{ listen: "127.0.0.1:0", token: ${token} }`), { catalog });
    try {
      const port = metricsPort(s);
      for (const p of ['/metrics', '/api/metrics/queue', '/api/metrics/discovery', '/api/metrics/goroutines', '/api/clients', '/api/clients/127.0.0.1', '/health', '/ready', '/api/stream', '/api/dashboard', '/app.js', '/vendor/uPlot.iife.min.js']) {
        const r = await request(port, p);
        assert.equal(r.status, 401, `${p} without the token`);
        assert.match(String(r.headers['www-authenticate']), /^Bearer/);
        assert.equal((await request(port, p, { headers: { Authorization: 'Bearer wrong-token-wrong-token' } })).status, 401, `${p} with a wrong token`);
      }
      assert.equal((await request(port, `/metrics?token=${token}`)).status, 401, 'a token in the URL is not accepted');
      assert.equal((await request(port, '/metrics', { headers: { Authorization: `Bearer ${token}` } })).status, 200);
      assert.equal((await request(port, '/health', { headers: { Authorization: `bearer ${token}` } })).status, 200);
      // A browser is sent to the login form.
      const home = await request(port, '/', { headers: { Accept: 'text/html' } });
      assert.equal(home.status, 303);
      assert.equal(home.headers.location, '/login');
      const form = await request(port, '/login');
      assert.equal(form.status, 200);
      assert.match(form.text, /<form method="post" action="\/login">/);
      assert.match(String(form.headers['content-security-policy']), /script-src 'self'/);
      assert.equal((await request(port, '/app.css')).status, 200, 'the login page style is public');
      // Wrong token: no cookie.
      const bad = await request(port, '/login', { method: 'POST', body: 'token=nope', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
      assert.equal(bad.status, 401);
      assert.equal(bad.headers['set-cookie'], undefined);
      // A login posted from another site is refused.
      const cross = await request(port, '/login', { method: 'POST', body: `token=${token}`, headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: 'http://evil.example' } });
      assert.equal(cross.status, 403);
      // The right token: an HttpOnly, SameSite=Strict cookie that is not the token.
      const ok = await request(port, '/login', { method: 'POST', body: `token=${encodeURIComponent(token)}`, headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: `http://127.0.0.1:${port}` } });
      assert.equal(ok.status, 303);
      assert.equal(ok.headers.location, '/');
      const setCookie = String(ok.headers['set-cookie']);
      assert.match(setCookie, /^codexdns_session=[^;]+; HttpOnly; SameSite=Strict; Path=\//);
      assert.ok(!setCookie.includes(token), 'the cookie is not the token');
      const cookie = setCookie.split(';')[0];
      for (const p of ['/', '/app.js', '/api/dashboard', '/api/metrics/queue', '/metrics', '/health']) {
        assert.equal((await request(port, p, { headers: { Cookie: cookie } })).status, 200, `${p} with the cookie`);
      }
      // A forged or altered cookie is worthless.
      const [name, value] = cookie.split('=');
      const [issued, mac] = value.split('.');
      assert.equal((await request(port, '/health', { headers: { Cookie: `${name}=${Number(issued) + 1}.${mac}` } })).status, 401);
      assert.equal((await request(port, '/health', { headers: { Cookie: `${name}=${issued}.${'A'.repeat(43)}` } })).status, 401);
      // The Host check still applies with a valid cookie.
      assert.equal((await request(port, '/health', { headers: { Cookie: cookie }, host: 'evil.example' })).status, 403);
      // Logging out clears the cookie.
      const out = await request(port, '/logout', { method: 'POST', headers: { Cookie: cookie } });
      assert.equal(out.status, 303);
      assert.match(String(out.headers['set-cookie']), /Max-Age=0/);
    } finally {
      await s.stop();
    }
  });

  test('guessing the token is throttled', async () => {
    const s = await startServer(BASIC('{ listen: "127.0.0.1:0", token: abcdefghijklmnopqrstuvwxyz }'), { catalog });
    try {
      const port = metricsPort(s);
      const statuses: number[] = [];
      for (let i = 0; i < 14; i++) {
        statuses.push((await request(port, '/login', { method: 'POST', body: `token=guess${i}`, headers: { 'Content-Type': 'application/x-www-form-urlencoded' } })).status);
      }
      assert.deepEqual(statuses.slice(0, 10), Array(10).fill(401));
      assert.ok(statuses.slice(10).every((x) => x === 429), statuses.join(','));
    } finally {
      await s.stop();
    }
  });
});

// --------------------------------------------------------------------------------------------- lifecycle

describe('listener lifecycle', () => {
  test('the HTTP listener survives reloads (its handlers follow the new chain) and closes at shutdown', async () => {
    const s = await startServer(BASIC('{ listen: "127.0.0.1:0" }'), { catalog });
    const port = metricsPort(s);
    let stopped = false;
    try {
      for (let i = 0; i < 5; i++) await s.query(`r${i}.example`, 'A');
      // 1. Another plugin's options change: the metrics options are the same, the lease moves to the new chain.
      let r = await s.reload(BASIC('{ listen: "127.0.0.1:0" }').replace('cache: {}', 'cache: { capacity: 500 }'));
      assert.deepEqual(r, { ok: true });
      assert.equal(metricsPort(s), port, 'same listener');
      for (let i = 0; i < 3; i++) await s.query(`r${i}.example`, 'A');
      let m = await scrape(port);
      assert.equal(sum(m.series, 'codexdns_dns_requests_total'), 8, 'counts continue across the reload');
      assert.equal(sum(m.series, 'codexdns_plugin_duration_seconds_count', { plugin: 'acl' }), 8, 'the new chain is timed too');
      // The handlers read the new chain: clienttrack appears.
      assert.equal((await request(port, '/api/metrics/queue')).json<{ enabled: boolean }>().enabled, false);
      r = await s.reload(BASIC('{ listen: "127.0.0.1:0" }', '      - clienttrack: { flush: 50ms }\n'));
      assert.deepEqual(r, { ok: true });
      assert.equal(metricsPort(s), port);
      await s.query('t.example', 'A');
      await waitFor('the new tracker', async () => (await request(port, '/api/metrics/queue')).json<{ enabled: boolean; submitted: number }>().submitted === 1);

      // 2. The metrics plugin's own options change, same address: the same listener is shared, not re-bound.
      r = await s.reload(BASIC('{ listen: "127.0.0.1:0", interval: 500ms }', '      - clienttrack: { flush: 50ms }\n'));
      assert.deepEqual(r, { ok: true });
      assert.equal(metricsPort(s), port);
      assert.equal((await request(port, '/api/dashboard')).json<{ intervalMs: number }>().intervalMs, 500);

      // 3. A reload that fails keeps everything as it was.
      r = await s.reload(BASIC('{ listen: "0.0.0.0:0" }'));
      assert.equal(r.ok, false);
      assert.match(r.error ?? '', /token/);
      assert.equal(metricsPort(s), port);
      assert.equal((await request(port, '/ready')).status, 200);

      // 4. Another address: the old listener closes, the new one answers.
      const other = await new Promise<number>((resolve) => {
        const srv = net.createServer().listen(0, '127.0.0.1', () => {
          const p = (srv.address() as net.AddressInfo).port;
          srv.close(() => resolve(p));
        });
      });
      r = await s.reload(BASIC(`{ listen: "127.0.0.1:${other}" }`));
      assert.deepEqual(r, { ok: true });
      assert.equal(metricsPort(s), other);
      assert.equal((await request(other, '/ready')).status, 200);
      await waitFor('the old listener closed', async () => !(await portOpen(port)));
      m = await scrape(other);
      assert.equal(sum(m.series, 'codexdns_dns_requests_total'), 9);

      await s.stop();
      stopped = true;
      assert.equal(httpListeners(s.server.metrics.registry).length, 0);
      assert.equal(await portOpen(other), false, 'closed at shutdown');
    } finally {
      if (!stopped) await s.stop();
    }
  });

  test('two server blocks share one listener; each block has its own series', async () => {
    const s = await startServer(
      `
servers:
  - listen: [udp://127.0.0.1:0]
    zones: [example.org]
    plugins:
      - metrics: { listen: "127.0.0.1:0" }
      - answerer: {}
  - listen: [udp://127.0.0.2:0]
    plugins:
      - metrics: { listen: "127.0.0.1:0" }
      - answerer: {}
`,
      { catalog },
    );
    try {
      const port = metricsPort(s);
      const second = s.server.listenerPorts().find((l) => l.host === '127.0.0.2')!;
      await s.query('a.example.org', 'A');
      await s.query('b.example.net', 'A', { host: '127.0.0.2', port: second.port });
      await s.query('c.example.net', 'A', { host: '127.0.0.2', port: second.port });
      const { series } = await scrape(port);
      assert.equal(sum(series, 'codexdns_dns_requests_total', { server: 'block0', zone: 'example.org.' }), 1);
      assert.equal(sum(series, 'codexdns_dns_requests_total', { server: 'block1', zone: '.' }), 2);
      const h = (await request(port, '/health')).json<{ parts: { dns: { blocks: string[] } } }>();
      assert.deepEqual(h.parts.dns.blocks, ['block0', 'block1']);
    } finally {
      await s.stop();
    }
  });
});

describe('prom-client, file by file', () => {
  test("the classes codexdns loads are the package's own, and its index (Pushgateway, cluster, Summary) is never loaded", () => {
    assert.equal(promClient.Registry, promClientIndex.Registry);
    assert.equal(promClient.Counter, promClientIndex.Counter);
    assert.equal(promClient.Gauge, promClientIndex.Gauge);
    assert.equal(promClient.Histogram, promClientIndex.Histogram);
    // A fresh process loads the registry and the metrics plugin with its process metrics, as a server does.
    const script = `
      const { MetricsHub } = require(${JSON.stringify(require.resolve('../core/metricsRegistry'))});
      require(${JSON.stringify(require.resolve('../plugins/metrics'))});
      const { collectDefaultMetrics, Registry } = require(${JSON.stringify(require.resolve('../core/promClient'))});
      collectDefaultMetrics({ register: new Registry() });
      const loaded = Object.keys(require.cache).filter((f) => /node_modules[\\/]prom-client[\\/]/.test(f));
      const otel = Object.keys(require.cache).some((f) => /node_modules[\\/]@opentelemetry[\\/]/.test(f));
      console.log(JSON.stringify({ index: loaded.some((f) => /prom-client[\\/]index\.js$/.test(f)), pushgateway: loaded.some((f) => f.endsWith('pushgateway.js')), files: loaded.length, registry: typeof MetricsHub, otel }));
    `;
    const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' })) as { index: boolean; pushgateway: boolean; files: number; registry: string; otel: boolean };
    assert.equal(out.registry, 'function');
    assert.ok(out.files > 5, 'prom-client was loaded');
    assert.equal(out.index, false);
    assert.equal(out.pushgateway, false);
    assert.equal(out.otel, false, '@opentelemetry/api (prom-client loads it for exemplars) stays unloaded');
  });

  test("the default metrics are prom-client's: the same series, help and types in the same order, CPU seconds counted", async () => {
    const ours = new promClient.Registry();
    promClient.collectDefaultMetrics({ register: ours, prefix: 'x_', labels: { box: 'nas' } });
    const theirs = new promClientIndex.Registry();
    promClientIndex.collectDefaultMetrics({ register: theirs, prefix: 'x_', labels: { box: 'nas' } });
    const shape = (ms: { name: string; help: string; type: string; aggregator: string }[]): string[] => ms.map((m) => `${m.name} ${m.type} ${m.aggregator} ${m.help}`);
    const [a, b] = await Promise.all([ours.getMetricsAsJSON(), theirs.getMetricsAsJSON()]);
    assert.deepEqual(shape(a as never), shape(b as never));
    const end = Date.now() + 20;
    while (Date.now() < end); // some CPU time to count
    const cpu = (await ours.getMetricsAsJSON()).filter((m) => m.name.startsWith('x_process_cpu_'));
    assert.deepEqual(cpu.map((m) => m.name), ['x_process_cpu_user_seconds_total', 'x_process_cpu_system_seconds_total', 'x_process_cpu_seconds_total']);
    for (const m of cpu) assert.deepEqual(m.values.map((v) => v.labels), [{ box: 'nas' }]);
    const value = (name: string): number => cpu.find((m) => m.name === name)!.values[0].value;
    assert.ok(value('x_process_cpu_seconds_total') > 0);
    assert.ok(Math.abs(value('x_process_cpu_seconds_total') - value('x_process_cpu_user_seconds_total') - value('x_process_cpu_system_seconds_total')) < 1e-9);
  });
});
