// The dashboard in a real headless Chromium (Debian's /usr/bin/chromium driven by playwright-core — never a
// downloaded browser): the page loads, every graph receives data, the top-clients table fills, the breaker
// indicator turns when the breaker opens, the layout fits a phone, and the token login works through the form.
// Screenshots go to test-output/ (gitignored).
//
// Discovery (rdns only) asks a resolver the test runs: it answers each PTR with a name until the test makes it
// go silent; the timeouts are failures, and three in a row open the rdns breaker.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as dnsPacket from 'dns-packet';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startFakeUpstream, startServer, type FakeUpstream, type TestServer } from '../testing';
import { definePlugin, type AnyPluginDefinition } from '../core/plugin';
import { Type } from '../config/types';
import { DnsResponse } from '../core/response';
import type { PluginCatalog } from '../config/load';
import { builtinCatalog } from '../server/catalog';
import { httpListeners } from '../plugins/metrics';

const CHROMIUM = '/usr/bin/chromium';
const OUT = path.resolve(__dirname, '..', '..', 'test-output');
const CHARTS = ['qps', 'queue', 'rate', 'discovery', 'tasks'] as const;

// ---------------------------------------------------------------------------------------------- plugins

const answerer = definePlugin({
  name: 'answerer',
  options: Type.Object({}),
  setup(api) {
    api.hooks.query.tap('answerer', (ctx) => {
      const q = ctx.message.questions?.[0];
      return DnsResponse.fromPacket({
        type: 'response',
        id: ctx.query.id,
        flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
        questions: q ? [q] : [],
        answers: q && q.type === 'A' ? [{ name: q.name, type: 'A', ttl: 300, data: '192.0.2.7' }] : [],
      });
    });
  },
});

/** The test flips `failing` to make discovery's rdns resolver go silent, which opens the rdns breaker. */
const resolverState = { failing: false };

const catalog: PluginCatalog = {
  get: (name) => (name === 'answerer' ? (answerer as unknown as AnyPluginDefinition) : builtinCatalog.get(name)),
  names: () => [...builtinCatalog.names(), 'answerer'],
};

// The page's globals, for the functions that run in the browser (this project compiles without the DOM lib).
declare const document: { getElementById(id: string): { getAttribute(n: string): string | null } | null; cookie: string; documentElement: { scrollWidth: number } };
declare const window: { innerWidth: number };
declare function getComputedStyle(e: unknown): { gridTemplateColumns: string };

// ---------------------------------------------------------------------------------------------- helpers

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function metricsUrl(s: TestServer): string {
  const [l] = httpListeners(s.server.metrics.registry);
  return `http://127.0.0.1:${l.port}`;
}

let context: BrowserContext;
let userDir: string;

async function openPage(): Promise<{ page: Page; errors: string[] }> {
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  return { page, errors };
}

/** Keeps queries coming: known clients (cache hits and misses) and, every few hundred ms, a new client. */
function traffic(s: TestServer): { stop(): Promise<void>; newClients: () => number } {
  let running = true;
  let fresh = 0;
  const loop = (async () => {
    let i = 0;
    while (running) {
      const from = `127.0.7.${1 + (i % 3)}`;
      await s.query(`page${i % 7}.example`, 'A', { from }).catch(() => undefined);
      if (i % 6 === 0) {
        fresh++;
        await s.query(`new${fresh}.example`, 'A', { from: `127.0.${8 + Math.floor(fresh / 250)}.${1 + (fresh % 250)}` }).catch(() => undefined);
      }
      i++;
      await sleep(40);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
    },
    newClients: () => fresh,
  };
}

/**
 * The resolver for the real rdns method: answers each PTR with a device name (`pc-1-7.home.arpa` for 127.0.7.1)
 * while `resolverState.failing` is false, then goes silent (timeouts: an outage, which the breaker counts).
 */
function flakyResolver(): Promise<FakeUpstream> {
  return startFakeUpstream({
    tcp: false,
    answer: (q) => {
      if (resolverState.failing) return null;
      const octets = q.name.split('.');
      return { aa: true, answers: q.type === 'PTR' ? [{ name: q.name, type: 'PTR', ttl: 60, data: `pc-${octets[0]}-${octets[1]}.home.arpa` }] : [] };
    },
  });
}

// ------------------------------------------------------------------------------------------------ tests

describe('dashboard in headless Chromium', { skip: fs.existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (scripts/test-deps.sh installs it)` }, () => {
  before(async () => {
    fs.mkdirSync(OUT, { recursive: true });
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-chromium-'));
    context = await chromium.launchPersistentContext(userDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 1000 },
    });
  });

  after(async () => {
    await context?.close();
    if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
  });

  test('every graph receives data, the clients table fills, the breaker indicator turns open, a phone gets one column', async () => {
    const dead = await flakyResolver();
    const guards = `      - breaker: { discovery: { failures: 3, reset: 60s } }\n`;
    const discovery = `      - discovery: { methods: [rdns], timeout: 300ms, rdns: { resolvers: ["127.0.0.1:${dead.port}"] } }\n`;
    const s = await startServer(
      `
servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
      - acl: { allow: [127.0.0.0/8] }
      - metrics: { listen: "127.0.0.1:0", interval: 500ms }
${guards}      - cache: {}
      - clienttrack: { flush: 100ms, priority: {} }
${discovery}      - answerer: {}
`,
      { catalog },
    );
    const load = traffic(s);
    const { page, errors } = await openPage();
    try {
      // The internals live on the System view (the owner's views are test/dashboard-owner.test.ts).
      await page.goto(`${metricsUrl(s)}/#/system`);
      assert.equal(await page.title(), 'codexdns');
      // Each graph gets data points (the page counts the samples in which a series had a value).
      await page.waitForFunction(
        (ids) => ids.every((id) => Number(document.getElementById(`chart-${id}`)?.getAttribute('data-points') ?? 0) >= 3),
        [...CHARTS],
        { timeout: 20_000 },
      );
      for (const id of CHARTS) {
        const enabled = await page.getAttribute(`#chart-${id}`, 'data-enabled');
        assert.equal(enabled, 'true', `${id} chart enabled`);
        // uPlot drew its canvas at the container's width.
        const canvas = await page.$eval(`#chart-${id} canvas`, (c) => (c as unknown as { width: number }).width);
        assert.ok(canvas > 100, `${id} canvas width ${canvas}`);
      }
      await page.waitForFunction(() => Number(document.getElementById('clients')?.getAttribute('data-rows')) >= 1, undefined, { timeout: 10_000 });
      // Top clients by name: the known clients' names, found by rdns, replace their addresses.
      await page.waitForFunction(() => (document.getElementById('clients') as unknown as { textContent: string }).textContent.includes('.home.arpa'), undefined, { timeout: 15_000 });
      const firstClient = await page.textContent('#clients tbody tr td .name');
      assert.match(firstClient ?? '', /^pc-\d+-7\.home\.arpa$/);
      assert.notEqual(await page.textContent('#kpi-qps'), '–');
      await page.waitForFunction(() => document.getElementById('status')?.getAttribute('data-status') === 'ok', undefined, { timeout: 10_000 });

      // The breaker: closed while discovery works…
      await page.waitForFunction(() => document.getElementById('breaker')?.getAttribute('data-state') === 'closed', undefined, { timeout: 10_000 });
      assert.ok((await page.$$('#breaker .badge')).length >= 1);
      // …open once attempts fail (three in a row trip it; new clients keep coming).
      resolverState.failing = true;
      await page.waitForFunction(() => document.getElementById('breaker')?.getAttribute('data-state') === 'open', undefined, { timeout: 30_000 });
      const badge = await page.$eval('#breaker .badge[data-state="open"]', (b) => b.textContent);
      assert.match(badge ?? '', /open/);
      await sleep(600);
      await page.screenshot({ path: path.join(OUT, 'dashboard.png'), fullPage: true });

      // A phone: one column, nothing wider than the screen.
      await page.setViewportSize({ width: 390, height: 844 });
      await sleep(800);
      const fit = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: window.innerWidth }));
      assert.ok(fit.scroll <= fit.width + 1, `page ${fit.scroll}px wide on a ${fit.width}px screen`);
      const columns = await page.$eval('main#view-system', (m) => getComputedStyle(m).gridTemplateColumns.split(' ').length);
      assert.equal(columns, 1);
      await page.screenshot({ path: path.join(OUT, 'dashboard-phone.png'), fullPage: true });
      assert.deepEqual(errors, [], 'no script errors or CSP violations');
      assert.ok(load.newClients() > 0);
    } finally {
      resolverState.failing = false;
      await page.close();
      await load.stop();
      await s.stop();
      await dead.stop();
    }
  });

  test('with a token: the browser is sent to the login form, gets an HttpOnly cookie, and the page works with it', async () => {
    const token = 'a-very-secret-dashboard-token';
    const s = await startServer(
      `
servers:
  - listen: [udp://127.0.0.1:0]
    plugins:
      - metrics: { listen: "127.0.0.1:0", token: ${token}, interval: 200ms }
      - answerer: {}
`,
      { catalog },
    );
    const { page, errors } = await openPage();
    try {
      const base = metricsUrl(s);
      await page.goto(`${base}/`);
      assert.equal(new URL(page.url()).pathname, '/login');
      await page.fill('#token', 'wrong-wrong-wrong-wrong');
      await page.click('button[type=submit]');
      assert.match((await page.textContent('.error')) ?? '', /not the token/);
      await page.fill('#token', token);
      await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);
      assert.ok(!page.url().includes(token), 'the token is not in the URL');
      await page.waitForFunction(() => Number(document.getElementById('chart-qps')?.getAttribute('data-points')) >= 2, undefined, { timeout: 10_000 });
      const visibleCookies = await page.evaluate(() => document.cookie);
      assert.ok(!visibleCookies.includes('codexdns_session'), 'the session cookie is HttpOnly');
      const cookies = await context.cookies(base);
      const session = cookies.find((c) => c.name === 'codexdns_session');
      assert.ok(session && session.httpOnly && session.sameSite === 'Strict');
      assert.equal(await page.isVisible('#logout'), true);
      // Panels of plugins that are not in the chain say so (on the System view).
      await page.click('#nav a[data-view="system"]');
      assert.equal(await page.isVisible('#panel-queue .off'), true);
      assert.match((await page.textContent('#panel-queue .off')) ?? '', /not enabled/);
      assert.equal(await page.getAttribute('#breaker', 'data-state'), 'none');
      await page.screenshot({ path: path.join(OUT, 'dashboard-minimal.png'), fullPage: true });
      // Logging out ends the session.
      await Promise.all([page.waitForURL(`${base}/login`), page.click('#logout button')]);
      const r = await page.evaluate(async () => (await fetch('/api/dashboard')).status);
      assert.equal(r, 401);
      assert.deepEqual(errors.filter((e) => !/401/.test(e)), []);
    } finally {
      await page.close();
      await s.stop();
    }
  });
});
