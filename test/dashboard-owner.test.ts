// The owner's dashboard (Overview, Devices, a device's page, Query log, System) in a real headless Chromium
// (Debian's /usr/bin/chromium driven by playwright-core), over a real server: real sockets on loopback, the fake
// upstream, a real SQLite file. Opens a device from the overview, filters the log (a click on a name and on a
// client), pages back in time, pauses filtering through the Filtering panel, fits a phone, and writes the
// screenshots shown in the README to docs/.
//
// `fakefilter` speaks the filter plugin's API contract (GET /api/filter, POST /api/filter/pause|resume) and
// `names` adds a `dnsName` as the clientnames plugin does; both are being built elsewhere against that contract.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startServer, startFakeUpstream, type TestServer } from '../testing';
import { definePlugin } from '../core/plugin';
import { Type } from '../config/types';
import { httpListeners } from '../plugins/metrics';
import type {} from '../plugins/metrics/hooks';
import { catalogWith } from './helpers/catalog';

const CHROMIUM = '/usr/bin/chromium';
const DOCS = path.resolve(__dirname, '..', '..', 'docs');
const SHOTS = process.env.CODEXDNS_SCREENSHOTS === '1' ? DOCS : path.resolve(__dirname, '..', '..', 'test-output');

const filterState = { paused: null as string | null, pauses: 0 };

const fakefilter = definePlugin({
  name: 'fakefilter',
  options: Type.Object({}),
  setup(api) {
    let queries = 0;
    let blocked = 0;
    api.hooks.query.tap('fakefilter', (ctx) => {
      queries++;
      if (filterState.paused === null && ctx.qname.endsWith('ads.test')) {
        blocked++;
        return ctx.reply(3, { code: 15, text: 'blocked by ads list' });
      }
      return undefined;
    });
    api.hooksOf('metrics')?.routes.tap('fakefilter', (t) => {
      t.add({
        method: 'GET',
        path: '/api/filter',
        handler: () => ({
          enabled: true,
          paused: { all: filterState.paused, groups: {} },
          queries,
          blocked,
          groups: [{ name: 'kids', queries: 10, blocked: 2, paused: null }],
          sources: [
            { source: 'https://lists.example/ads.txt', kind: 'hosts', names: 81234, badLines: 0, unsupported: 0, lastRefresh: new Date().toISOString(), ok: true, error: null, ageSeconds: 60 },
            { source: '/etc/codexdns/local-block.txt', kind: 'domains', names: 12, badLines: 1, unsupported: 0, lastRefresh: new Date().toISOString(), ok: true, error: null, ageSeconds: 60 },
          ],
          topBlocked: [],
        }),
      });
      t.add({
        method: 'POST',
        path: '/api/filter/pause',
        handler: (req) => {
          const minutes = (req.body as { minutes?: number }).minutes ?? 5;
          filterState.pauses++;
          filterState.paused = new Date(Date.now() + minutes * 60_000).toISOString();
          return { ok: true };
        },
      });
      t.add({
        method: 'POST',
        path: '/api/filter/resume',
        handler: () => {
          filterState.paused = null;
          return { ok: true };
        },
      });
    });
  },
});

const names = definePlugin({
  name: 'names',
  options: Type.Object({}),
  setup(api) {
    const dns: Record<string, string> = { '127.0.7.1': 'laptop.home.arpa', '127.0.7.2': 'phone.home.arpa', '127.0.7.3': 'tv.home.arpa' };
    api.hooksOf('metrics')?.apiClient.tap('names', (c) => (dns[c.ip] ? { ...c, dnsName: dns[c.ip] } : c));
  },
});

const catalog = catalogWith(fakefilter, names);

declare const document: {
  getElementById(id: string): { getAttribute(n: string): string | null; textContent: string; hidden: boolean } | null;
  querySelectorAll(s: string): ArrayLike<{ textContent: string }>;
  documentElement: { scrollWidth: number };
};
declare const window: { innerWidth: number; scrollTo(x: number, y: number): void };
declare const location: { hash: string };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const rows = (page: Page, table: string): Promise<number> => page.$$eval(`#${table} tbody tr:not(.empty)`, (r) => r.length);
const column = (page: Page, table: string, i: number): Promise<string[]> => page.$$eval(`#${table} tbody tr:not(.empty)`, (trs, n) => trs.map((tr) => ((tr as unknown as { children: ArrayLike<{ textContent: string }> }).children[n as number]?.textContent ?? '')), i);

describe('owner dashboard in headless Chromium', { skip: fs.existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed` }, () => {
  let context: BrowserContext;
  let userDir: string;
  before(async () => {
    fs.mkdirSync(SHOTS, { recursive: true });
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-chromium-'));
    context = await chromium.launchPersistentContext(userDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
      viewport: { width: 1200, height: 860 },
    });
  });
  after(async () => {
    await context?.close();
    if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
  });

  test('overview → a device; devices searchable and sortable; the log filtered by a click and paged back; filtering paused; a phone fits', async () => {
    const up = await startFakeUpstream({ records: { '*.example': { A: '192.0.2.10' }, '*.example.org': { A: '192.0.2.11' } } });
    const s: TestServer = await startServer(
      `
servers:
  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
    plugins:
      - acl: { allow: [127.0.0.0/8] }
      - metrics: { listen: "127.0.0.1:0", interval: 500ms }
      - names: {}
      - fakefilter: {}
      - cache: {}
      - clienttrack: { flush: 100ms }
      - querylog: { flush: 200ms }
      - forward: { to: ["127.0.0.1:${up.port}"] }
`,
      { catalog },
    );
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });
    try {
      // A household's traffic: five devices, a few popular names, some ads (blocked), a few misses.
      const sites = ['www.example', 'mail.example', 'video.example.org', 'news.example', 'cdn.example.org', 'api.example', 'tracker.ads.test', 'pixel.ads.test'];
      for (let i = 0; i < 180; i++) {
        const dev = 1 + (i % 5);
        const name = i % 11 === 0 ? `missing${i}.invalid` : sites[(i * 7 + dev) % sites.length];
        await s.query(name, i % 4 === 0 ? 'AAAA' : 'A', { from: `127.0.7.${dev}` }).catch(() => undefined);
      }
      const base = `http://127.0.0.1:${httpListeners(s.server.metrics.registry)[0].port}`;
      // Every entry written (the overview reads the stored hourly counts), however slow the machine is today.
      for (let i = 0; i < 300; i++) {
        const r = await fetch(`${base}/api/querylog/summary`).then((x) => x.json() as Promise<{ log: { written: number } }>);
        if (r.log.written === 180) break;
        await sleep(100);
      }

      // Overview.
      await page.goto(`${base}/`);
      await page.waitForFunction(() => Number(document.getElementById('top-devices')?.getAttribute('data-rows')) >= 5, undefined, { timeout: 15_000 });
      await page.waitForFunction(() => document.getElementById('ov-queries')?.textContent !== '–', undefined, { timeout: 10_000 });
      assert.equal(await page.textContent('#ov-queries'), (180).toLocaleString('en-US'));
      assert.match((await page.textContent('#ov-blocked')) ?? '', /^\d+$/);
      assert.ok(Number(await page.textContent('#ov-blocked')) > 0);
      assert.match((await page.textContent('#ov-cache')) ?? '', /%$/);
      assert.equal(await page.textContent('#ov-devices'), '5');
      assert.match((await page.textContent('#ov-upstreams')) ?? '', /1 \/ 1 up/);
      assert.ok(Number(await page.getAttribute('#chart-activity', 'data-points')) >= 24);
      assert.ok((await rows(page, 'top-domains')) >= 5);
      assert.deepEqual((await column(page, 'top-blocked', 0)).sort(), ['pixel.ads.test', 'tracker.ads.test']);
      assert.ok((await column(page, 'top-devices', 0)).includes('laptop.home.arpa'), 'devices by their DNS name');
      // Filtering panel (the filter plugin's API): sources listed; pause, then resume.
      await page.waitForSelector('#panel-filter:not([hidden])', { timeout: 10_000 });
      assert.equal(await rows(page, 'filter-sources'), 2);
      await page.click('#filter-pause');
      await page.waitForFunction(() => /paused until/.test(document.getElementById('filter-state')?.textContent ?? ''), undefined, { timeout: 5000 });
      assert.equal(filterState.pauses, 1);
      await page.click('#filter-resume');
      await page.waitForFunction(() => document.getElementById('filter-state')?.textContent === 'on', undefined, { timeout: 5000 });
      for (const r of ['1h', '7d', '24h']) {
        await page.click(`#ranges button[data-range="${r}"]`);
        await sleep(300);
      }
      await sleep(300);
      await page.screenshot({ path: path.join(SHOTS, 'dashboard-overview.png') });

      // Open a device from the overview.
      await page.click('#top-devices tbody tr:first-child a');
      await page.waitForFunction(() => location.hash.startsWith('#/device/'), undefined, { timeout: 5000 });
      const ip = decodeURIComponent((await page.evaluate(() => location.hash)).slice('#/device/'.length));
      assert.match(ip, /^127\.0\.7\.\d$/);
      await page.waitForFunction(() => Number(document.getElementById('dev-recent')?.getAttribute('data-rows')) >= 1, undefined, { timeout: 10_000 });
      const details = (await page.textContent('#dev-details')) ?? '';
      assert.ok(details.includes(ip), details);
      assert.match(details, /First seen/);
      assert.match(details, /Queries today\d+/);
      assert.ok((await rows(page, 'dev-domains')) >= 1);
      assert.ok((await rows(page, 'dev-blocked')) >= 1, 'its blocked queries');
      assert.ok(Number(await page.getAttribute('#chart-device', 'data-points')) >= 24);
      await sleep(300);
      await page.screenshot({ path: path.join(SHOTS, 'dashboard-device.png') });

      // Devices: all of them, searchable, sortable.
      await page.click('#nav a[data-view="devices"]');
      await page.waitForFunction(() => Number(document.getElementById('devices')?.getAttribute('data-rows')) === 5, undefined, { timeout: 10_000 });
      assert.deepEqual(await column(page, 'devices', 7), ['36', '36', '36', '36', '36']);
      await page.click('#devices th[data-sort="ip"]');
      await page.waitForFunction(() => document.querySelectorAll('#devices tbody tr td:nth-child(2)')[0]?.textContent === '127.0.7.1', undefined, { timeout: 5000 });
      await page.click('#devices th[data-sort="ip"]');
      await page.waitForFunction(() => document.querySelectorAll('#devices tbody tr td:nth-child(2)')[0]?.textContent === '127.0.7.5', undefined, { timeout: 5000 });
      await page.screenshot({ path: path.join(SHOTS, 'dashboard-devices.png') });
      await page.fill('#dev-search', '127.0.7.3');
      await page.waitForFunction(() => Number(document.getElementById('devices')?.getAttribute('data-rows')) === 1, undefined, { timeout: 5000 });

      // Query log: newest first, live; a click on a name filters by it, a click on a client by that client.
      await page.click('#nav a[data-view="log"]');
      await page.waitForFunction(() => Number(document.getElementById('log')?.getAttribute('data-rows')) === 50, undefined, { timeout: 10_000 });
      await page.click('#log tbody tr:first-child a.name');
      const clicked = await page.evaluate(() => new URLSearchParams(location.hash.split('?')[1]).get('name'));
      assert.ok(clicked);
      await page.waitForFunction((n) => { const names = document.querySelectorAll('#log tbody tr td:nth-child(3)'); return names.length > 0 && Array.from(names).every((e) => e.textContent === n); }, clicked, { timeout: 5000 });
      await page.click('#log tbody tr:first-child a.client');
      await page.waitForFunction(() => /client=/.test(location.hash) && !/name=/.test(location.hash), undefined, { timeout: 5000 });
      await page.waitForFunction(() => Number(document.getElementById('log')?.getAttribute('data-rows')) === 36, undefined, { timeout: 5000 });
      // Filters typed in the form: blocked ones only.
      await page.click('#f-clear');
      await page.fill('#f-name', 'ads');
      await page.check('#f-blocked');
      await page.click('#log-filters button[type=submit]');
      await page.waitForFunction(() => { const names = document.querySelectorAll('#log tbody tr td:nth-child(3)'); return names.length > 0 && Array.from(names).every((e) => /ads\.test$/.test(e.textContent)); }, undefined, { timeout: 5000 });
      assert.ok((await column(page, 'log', 4)).every((a) => a === 'blocked'));
      // Page back in time.
      await page.click('#f-clear');
      await page.waitForFunction(() => !/\?/.test(location.hash) && Number(document.getElementById('log')?.getAttribute('data-rows')) === 50, undefined, { timeout: 5000 });
      await page.uncheck('#log-live');
      const firstPage = await column(page, 'log', 2);
      await page.click('#log-older');
      await page.waitForFunction(() => document.getElementById('log')?.getAttribute('data-page') === '2', undefined, { timeout: 5000 });
      const secondPage = await column(page, 'log', 2);
      assert.equal(secondPage.length, 50);
      await page.click('#log-older');
      await page.click('#log-older');
      await page.waitForFunction(() => document.getElementById('log')?.getAttribute('data-page') === '4', undefined, { timeout: 5000 });
      assert.equal(await rows(page, 'log'), 180 - 150, 'the last page holds the oldest queries');
      assert.equal(await page.isDisabled('#log-older'), true);
      await page.click('#log-newest');
      await page.waitForFunction(() => document.getElementById('log')?.getAttribute('data-page') === '1', undefined, { timeout: 5000 });
      assert.deepEqual(await column(page, 'log', 2), firstPage);
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: path.join(SHOTS, 'dashboard-log.png') });

      // System: the internals, still there.
      await page.click('#nav a[data-view="system"]');
      await page.waitForFunction(() => Number(document.getElementById('chart-qps')?.getAttribute('data-points')) >= 2, undefined, { timeout: 10_000 });
      assert.equal(await page.isVisible('#chart-qps canvas'), true);
      await page.screenshot({ path: path.join(SHOTS, 'dashboard-system.png') });

      // A phone: every view fits the screen's width.
      await page.setViewportSize({ width: 390, height: 844 });
      for (const view of ['#/', '#/devices', `#/device/${ip}`, '#/log', '#/system']) {
        await page.evaluate((h) => { location.hash = h; }, view);
        await sleep(700);
        const fit = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: window.innerWidth }));
        assert.ok(fit.scroll <= fit.width + 1, `${view}: page ${fit.scroll}px wide on a ${fit.width}px screen`);
      }
      await page.evaluate(() => { location.hash = '#/'; });
      await sleep(800);
      await page.screenshot({ path: path.join(SHOTS, 'dashboard-phone.png') });
      assert.deepEqual(errors, [], 'no script errors or CSP violations');
    } finally {
      await page.close();
      await s.stop();
      await up.stop();
    }
  });
});
