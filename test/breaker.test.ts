/**
 * The breaker plugin: its logic driven by a ManualClock (exact: no sleeps), then one real server whose rdns
 * resolver (a fake upstream on 127.0.0.1) fails, with `reset: 300ms`.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../core/clock';
import type { BreakerState } from '../core/primitives/circuitBreaker';
import { startFakeUpstream, startServer } from '../testing';
import { createDiscoveryBreakers, CIRCUIT_OPEN } from '../plugins/breaker';
import { getDiscoveryMetrics } from '../plugins/discovery';
import { reverseName } from '../plugins/pkg/address';
import type { DiscoveryOutcome, DiscoveryRequest, MethodName } from '../plugins/discovery/hooks';
import { sleep, waitFor } from './helpers/net';

function req(ip = '10.0.0.5', methods: MethodName[] = ['rdns']): DiscoveryRequest {
  return { ip, methods, skip: new Set(), trial: new Set() };
}

function outcome(method: MethodName, kind: DiscoveryOutcome['kind']): DiscoveryOutcome {
  return { ip: '10.0.0.5', method, ok: kind === 'found', kind, latencyMs: 1, ...(kind === 'failure' ? { error: `${method}: timed out` } : {}) };
}

function rig(failures = 5, resetMs = 30_000) {
  const clock = new ManualClock(1000);
  const changes: string[] = [];
  const rejected: string[] = [];
  const b = createDiscoveryBreakers({
    failures,
    resetMs,
    clock,
    onChange: (m, from: BreakerState, to: BreakerState) => void changes.push(`${m}:${from}>${to}`),
    onReject: (m) => void rejected.push(m),
  });
  return { clock, b, changes, rejected };
}

describe('discovery breakers (ManualClock)', () => {
  test('a failing method trips after 5 failures; negatives and successes never count', () => {
    const { b, changes } = rig();
    for (let i = 0; i < 4; i++) b.discovered(outcome('rdns', 'failure'));
    b.discovered(outcome('rdns', 'negative')); // the resolver answered NXDOMAIN: it works
    for (let i = 0; i < 4; i++) b.discovered(outcome('rdns', 'failure'));
    assert.equal(b.state('rdns'), 'closed');
    assert.equal(b.snapshot().rdns?.consecutiveFailures, 4);
    // A device that does not speak NetBIOS is a negative: never trips, however many.
    for (let i = 0; i < 50; i++) b.discovered(outcome('netbios', 'negative'));
    assert.equal(b.state('netbios'), 'closed');
    b.discovered(outcome('rdns', 'failure'));
    assert.equal(b.state('rdns'), 'open');
    assert.deepEqual(changes, ['rdns:closed>open']);
  });

  test('while open it skips the method, and denies the job only when every method is open, spending nothing', () => {
    const { clock, b, rejected } = rig(5, 30_000);
    for (let i = 0; i < 5; i++) b.discovered(outcome('rdns', 'failure'));
    clock.advance(10_000);
    const both = req('10.0.0.6', ['rdns', 'netbios']);
    assert.equal(b.beforeDiscover(both), undefined);
    assert.deepEqual([...both.skip], ['rdns']);
    assert.deepEqual([...both.trial], []);
    const only = req('10.0.0.7', ['rdns']);
    const denial = b.beforeDiscover(only);
    assert.deepEqual(denial, { reason: CIRCUIT_OPEN, retryAfterMs: 20_000 });
    assert.deepEqual(rejected, ['rdns', 'rdns']);
    assert.equal(b.snapshot().rdns?.rejected, 2);
    assert.equal(b.snapshot().rdns?.retryInMs, 20_000);
  });

  test('half-opens after reset: exactly one trial; success closes it', () => {
    const { clock, b, changes } = rig(5, 30_000);
    for (let i = 0; i < 5; i++) b.discovered(outcome('rdns', 'failure'));
    clock.advance(29_999);
    assert.ok(b.beforeDiscover(req()));
    clock.advance(1);
    const trial = req('10.0.0.8');
    assert.equal(b.beforeDiscover(trial), undefined);
    assert.deepEqual([...trial.trial], ['rdns'], 'the job is told to run rdns as a trial');
    assert.equal(b.state('rdns'), 'half-open');
    // A second job while the trial is out: rdns skipped, and with nothing else to run, denied.
    const second = req('10.0.0.9');
    const d = b.beforeDiscover(second);
    assert.equal(d?.reason, CIRCUIT_OPEN);
    assert.ok((d?.retryAfterMs ?? 0) > 0);
    b.discovered(outcome('rdns', 'found'));
    assert.equal(b.state('rdns'), 'closed');
    assert.equal(b.beforeDiscover(req()), undefined);
    assert.deepEqual(changes, ['rdns:closed>open', 'rdns:open>half-open', 'rdns:half-open>closed']);
  });

  test('a failed trial reopens it for another `reset`', () => {
    const { clock, b, changes } = rig(5, 30_000);
    for (let i = 0; i < 5; i++) b.discovered(outcome('rdns', 'failure'));
    clock.advance(30_000);
    assert.equal(b.beforeDiscover(req()), undefined);
    b.discovered(outcome('rdns', 'failure'));
    assert.equal(b.state('rdns'), 'open');
    assert.deepEqual(b.beforeDiscover(req()), { reason: CIRCUIT_OPEN, retryAfterMs: 30_000 });
    clock.advance(30_000);
    assert.equal(b.beforeDiscover(req()), undefined);
    b.discovered(outcome('rdns', 'negative'));
    assert.equal(b.state('rdns'), 'closed');
    assert.deepEqual(changes, ['rdns:closed>open', 'rdns:open>half-open', 'rdns:half-open>open', 'rdns:open>half-open', 'rdns:half-open>closed']);
  });

  test('a trial that a later guard denied is given back (attemptDenied), so the next job runs it', () => {
    const { clock, b } = rig(5, 30_000);
    for (let i = 0; i < 5; i++) b.discovered(outcome('rdns', 'failure'));
    clock.advance(30_000);
    const first = req('10.0.0.10');
    assert.equal(b.beforeDiscover(first), undefined);
    assert.ok(first.trial.has('rdns'));
    // ratelimit, asked after the breaker, refuses this job:
    b.attemptDenied(first);
    const next = req('10.0.0.11');
    assert.equal(b.beforeDiscover(next), undefined, 'the trial slot is free again');
    assert.ok(next.trial.has('rdns'));
  });

  test('one breaker per method', () => {
    const { b } = rig(2, 1000);
    b.discovered(outcome('rdns', 'failure'));
    b.discovered(outcome('rdns', 'failure'));
    b.discovered(outcome('dhcp', 'failure'));
    assert.equal(b.state('rdns'), 'open');
    assert.equal(b.state('dhcp'), 'closed');
    assert.equal(b.state('mdns'), 'closed');
    const r = req('10.0.0.12', ['dhcp', 'rdns', 'mdns']);
    assert.equal(b.beforeDiscover(r), undefined);
    assert.deepEqual([...r.skip], ['rdns']);
  });
});

describe('breaker in a server', () => {
  test('rdns failing: opens after 5 failures, denies while open, half-opens after reset (300ms), closes on a success', async (t) => {
    const up = await startFakeUpstream({ rcode: 'SERVFAIL', records: { '*.test': { A: '192.0.2.1' } } });
    const clients = Array.from({ length: 6 }, (_, i) => `127.0.81.${i + 1}`);
    const s = await startServer(`
servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
      - acl: { allow: [127.0.0.0/8] }
      - breaker: { discovery: { failures: 5, reset: 300ms } }
      - clienttrack: { flush: 100ms }
      - discovery: { methods: [rdns], workers: 3, timeout: 1s, retry: { attempts: 100, backoff: 200ms, max_backoff: 200ms }, rdns: { resolvers: ["${up.address}"] } }
      - forward: { to: ["${up.address}"] }
storage: { client: sqlite3, connection: { filename: ./clients.sqlite } }
`);
    const ptrs = (): Array<{ at: number; name: string }> => up.queries.filter((q) => q.type === 'PTR');
    const transitions = (): string[] => s.logs.filter((l) => /breaker rdns:/.test(l)).map((l) => /breaker rdns: (\S+ → \S+)/.exec(l)![1]);
    try {
      await sleep(300);
      await Promise.all(clients.map((from) => s.query('www.example.test', 'A', { from })));
      await waitFor('open', () => transitions().includes('closed → open'));
      const failuresBeforeOpen = ptrs().length;
      assert.ok(failuresBeforeOpen >= 5 && failuresBeforeOpen <= 6, `${failuresBeforeOpen} PTR queries before it opened`);
      const openedAt = ptrs()[failuresBeforeOpen - 1].at;
      // The trial is slow, so we can see that nothing else is asked while it is out.
      up.delayMs = 150;
      await waitFor('a failed trial', () => transitions().includes('half-open → open'), 5000);
      const trial = ptrs()[failuresBeforeOpen];
      assert.ok(trial.at - openedAt >= 290, `first trial ${trial.at - openedAt} ms after opening (reset 300ms)`);
      assert.equal(ptrs().length, failuresBeforeOpen + 1, 'denied while open, one trial while half-open');
      const m = getDiscoveryMetrics()!;
      assert.ok(m.totals.breakerRejected > 0, 'jobs were denied circuit-open');
      assert.equal((m.guards.breaker as Record<string, { state: string }>).rdns.state, 'open');
      // The resolver comes back: the next trial succeeds and closes the breaker; everyone is discovered.
      up.rcode = undefined;
      up.delayMs = 0;
      for (const ip of clients) up.set(reverseName(ip), 'PTR', `back-${ip.split('.')[3]}.lan`);
      await waitFor('closed', () => transitions().includes('half-open → closed'), 5000);
      await waitFor('everyone discovered', () => getDiscoveryMetrics()!.totals.succeeded === clients.length, 10_000);
      t.diagnostic(`transitions: ${transitions().join(', ')}; PTR queries ${ptrs().length}; circuit-open denials ${getDiscoveryMetrics()!.totals.breakerRejected}`);
      assert.deepEqual(transitions().slice(0, 3), ['closed → open', 'open → half-open', 'half-open → open']);
      assert.equal(transitions().at(-1), 'half-open → closed');
      const gauge = await s.server.metrics.registry.getSingleMetricAsString('codexdns_breaker_state');
      assert.match(gauge, /codexdns_breaker_state\{guard="discovery",method="rdns"\} 0/);
      const changes = await s.server.metrics.registry.getSingleMetricAsString('codexdns_breaker_transitions_total');
      assert.match(changes, /method="rdns",to="open"\} [1-9]/);
    } finally {
      await s.stop();
      await up.stop();
    }
  });
});
