/**
 * Issue 15, point 1: an upstream's health is about the upstream, not about one question. A loopback upstream
 * that never answers `*.lame.test` and answers everything else (health probes included); lame questions cost
 * themselves a SERVFAIL, never the upstream's health nor other clients' answers.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startFakeUpstream, type TestServer, type FakeUpstream, type Answer } from '../testing';
import { metric } from './helpers/metrics';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


function corefile(up: FakeUpstream, forward: string, cache = ''): string {
  return `servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
${cache ? `      - cache: ${cache}\n` : ''}      - forward: { to: [${up.address}], ${forward} }
`;
}

async function lameUpstream(): Promise<FakeUpstream> {
  return startFakeUpstream({ records: { '*.ok.test': { A: '192.0.2.1' }, '*.lame.test': { silent: true } } });
}

/** Sends `q` without waiting long for it: lame questions may get REFUSED, SERVFAIL or (over the bound) nothing. */
function tryQuery(s: TestServer, name: string, from: string): Promise<string> {
  return s.query(name, 'A', { from, timeoutMs: 3000 }).then(
    (a: Answer) => a.rcode,
    () => 'NO-REPLY',
  );
}

describe('forward health (issue 15.1)', () => {
  test('many lame questions from one client: the upstream stays up, and another client gets NOERROR every time', async (t) => {
    const up = await lameUpstream();
    const s = await startServer(corefile(up, 'timeout: 300ms, deadline: 800ms, max_fails: 2, health_check: 100ms, max_concurrent: 40'));
    try {
      const flooder = '127.0.0.2';
      const victim = '127.0.0.3';
      let stop = false;
      const lameRcodes: string[] = [];
      // 6 waves of 60 distinct lame names (360 in all), each wave waiting for its answers: bounded in count and time.
      const flood = (async () => {
        for (let wave = 0; wave < 6 && !stop; wave++) {
          const names = Array.from({ length: 60 }, (_, i) => `n${wave}-${i}.lame.test`);
          lameRcodes.push(...(await Promise.all(names.map((n) => tryQuery(s, n, flooder)))));
        }
      })();
      // 1,000 copies of one lame question, from 100 addresses (10 each): merged copies, not distinct questions.
      const copies = Promise.all(Array.from({ length: 1000 }, (_, i) => tryQuery(s, 'same.lame.test', `127.0.1.${1 + (i % 100)}`)));
      await sleep(100);
      const victimRcodes: string[] = [];
      for (let i = 0; i < 60; i++) {
        const a = await s.query(`v${i}.ok.test`, 'A', { from: victim, timeoutMs: 2000 });
        victimRcodes.push(a.rcode);
        assert.equal(a.rcode, 'NOERROR', `ordinary name #${i} while lame names flood: ${a.rcode}`);
        assert.deepEqual((a.answers ?? []).map((r) => (r as { data: string }).data), ['192.0.2.1']);
        await sleep(40);
      }
      stop = true;
      await flood;
      const copyRcodes = await copies;
      assert.equal(victimRcodes.length, 60);
      const tally = (xs: string[]): string => [...new Set(xs)].map((c) => `${c} ${xs.filter((x) => x === c).length}`).join(', ');
      t.diagnostic(`ordinary names from another client: ${tally(victimRcodes)}; lame names: ${tally(lameRcodes)}; copies of one lame name: ${tally(copyRcodes)}`);
      assert.ok(lameRcodes.every((c) => c === 'SERVFAIL' || c === 'REFUSED'), `lame answers: ${[...new Set(lameRcodes)].join(',')}`);
      assert.ok(lameRcodes.includes('REFUSED'), 'the flooding client was held to its share');
      assert.ok(copyRcodes.every((c) => c === 'SERVFAIL' || c === 'REFUSED'), `copies: ${[...new Set(copyRcodes)].join(',')}`);
      assert.ok(copyRcodes.filter((c) => c === 'SERVFAIL').length >= 40, 'merged copies are answered SERVFAIL (up to their own bound)');

      // Timeouts were seen and probed; every probe was answered: the upstream never went down.
      assert.ok((await metric(s, 'codexdns_forward_timeouts_total', { to: up.address })) > 0);
      assert.ok(up.count('', 'NS') >= 1, 'a timeout starts a `. NS` probe');
      assert.equal(await metric(s, 'codexdns_forward_healthcheck_failures_total', { to: up.address }), 0);
      assert.equal(await metric(s, 'codexdns_forward_upstream_up', { to: up.address }), 1);
      assert.ok(!s.logs.some((l) => /upstream marked down/.test(l)), 'never marked down');
      assert.ok((await metric(s, 'codexdns_forward_max_concurrent_rejects_total', { reason: 'client_share' })) > 0);
      assert.ok((await metric(s, 'codexdns_forward_max_concurrent_rejects_total', { reason: 'merged' })) > 0);
      assert.equal(await metric(s, 'codexdns_forward_max_concurrent_rejects_total', { reason: 'max_concurrent' }), 0);
      // Everything given back.
      assert.equal(await metric(s, 'codexdns_forward_inflight_queries'), 0);
      assert.equal(await metric(s, 'codexdns_forward_merged_waiting_queries'), 0);
    } finally {
      await s.stop();
      await up.stop();
    }
  });

  test('an upstream that stops answering entirely is still marked down by its failed probes', async () => {
    const up = await lameUpstream();
    const s = await startServer(corefile(up, 'timeout: 200ms, deadline: 400ms, max_fails: 2, health_check: 100ms'));
    try {
      up.silent = true;
      assert.equal((await s.query('a.ok.test', 'A', { timeoutMs: 2000 })).rcode, 'SERVFAIL');
      for (let i = 0; i < 40 && !s.logs.some((l) => /upstream marked down/.test(l)); i++) await sleep(50);
      assert.equal(await metric(s, 'codexdns_forward_upstream_up', { to: up.address }), 0);
      assert.ok((await metric(s, 'codexdns_forward_healthcheck_failures_total', { to: up.address })) >= 2);
      up.silent = false;
      for (let i = 0; i < 40 && (await metric(s, 'codexdns_forward_upstream_up', { to: up.address })) === 0; i++) await sleep(50);
      assert.equal((await s.query('b.ok.test', 'A')).rcode, 'NOERROR');
    } finally {
      await s.stop();
      await up.stop();
    }
  });

  test('transport errors count: an upstream whose port is closed is marked down without waiting for timeouts', async () => {
    const gone = await lameUpstream();
    const address = gone.address;
    await gone.stop();
    const s = await startServer(`servers:
  - listen: [udp://127.0.0.1:0]
    plugins:
      - forward: { to: [${address}], timeout: 2s, deadline: 3s, max_fails: 2, health_check: 100ms }
`);
    try {
      const t0 = Date.now();
      assert.equal((await s.query('a.ok.test', 'A', { timeoutMs: 4000 })).rcode, 'SERVFAIL');
      assert.ok(Date.now() - t0 < 1000, 'port unreachable fails at once');
      for (let i = 0; i < 20 && !s.logs.some((l) => /upstream marked down/.test(l)); i++) await sleep(50);
      assert.equal(await metric(s, 'codexdns_forward_upstream_up', { to: address }), 0);
      assert.equal(await metric(s, 'codexdns_forward_timeouts_total', { to: address }), 0);
    } finally {
      await s.stop();
    }
  });

  test('a SERVFAIL made here (no upstream answered) is cached at most 1 s; an upstream SERVFAIL for servfail_ttl', async () => {
    const up = await lameUpstream();
    up.setName('broken.ok.test', { rcode: 'SERVFAIL' });
    const s = await startServer(corefile(up, 'timeout: 200ms, deadline: 300ms', '{ servfail_ttl: 30s }'));
    try {
      assert.equal((await s.query('x.lame.test', 'A', { timeoutMs: 2000 })).rcode, 'SERVFAIL');
      assert.equal((await s.query('broken.ok.test', 'A')).rcode, 'SERVFAIL');
      // The authority comes back.
      up.setName('x.lame.test', { A: '192.0.2.7' });
      await sleep(1100);
      const a = await s.query('x.lame.test', 'A');
      assert.equal(a.rcode, 'NOERROR', 'the local SERVFAIL was not kept past 1 s');
      const before = up.count('broken.ok.test');
      assert.equal((await s.query('broken.ok.test', 'A')).rcode, 'SERVFAIL');
      assert.equal(up.count('broken.ok.test'), before, "the upstream's own SERVFAIL is still cached");
    } finally {
      await s.stop();
      await up.stop();
    }
  });
});
