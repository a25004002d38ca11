/**
 * The metrics plugin's HTTP side: one listener per `listen` address and server process, shared by every server
 * block that names it, kept open across reloads (the newest chain's plugin instances are attached to it) and
 * closed when the last instance using it is dropped.
 *
 * Access: a loopback listener without a token is open to local processes; with a token (required for any other
 * address) every request must carry it — `Authorization: Bearer TOKEN`, or the HttpOnly session cookie that the
 * login form sets (a token never travels in a URL). Every request's `Host` must name this server (its address,
 * a configured `hosts` name, or for loopback `localhost`), so a DNS-rebinding page cannot read the API.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Registry } from 'prom-client';
import type { Logger } from '../../core/log';
import { httpStatusOf } from '../pkg/httpError';
import { ClientReader, HttpError, discoveryJson, errorText, goroutinesJson, healthJson, queueJson, upstreamsJson, type BlockView } from './api';
import type { CoreMetrics } from './requestMetrics';
import type { RouteMatch } from './routes';
import { HISTORY_SECONDS, Sampler, type Sample } from './series';

// ----------------------------------------------------------------------------------------------- listen

export interface HttpListen {
  readonly host: string;
  readonly port: number;
  readonly loopback: boolean;
  readonly wildcard: boolean;
  /** `host:port` as a key (IPv6 in brackets). */
  readonly key: string;
}

export function isLoopbackAddress(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  if (net.isIPv4(h)) return h.startsWith('127.');
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
  return m !== null && m[1].startsWith('127.');
}

/** `127.0.0.1:9153`, `[::1]:9153`, `0.0.0.0:9153`, `localhost:9153`; an error text otherwise. */
export function parseHttpListen(text: string): HttpListen | string {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text.trim());
  if (!m) return `${text}: expected HOST:PORT (an IP address or localhost; IPv6 in brackets: [::1]:9153)`;
  let host = m[1] ?? m[2];
  if (host.toLowerCase() === 'localhost') host = '127.0.0.1';
  if (!net.isIP(host)) return `${text}: ${host} is not an IP address`;
  if (m[1] === undefined && net.isIPv6(host)) return `${text}: an IPv6 address must be in brackets`;
  const port = Number(m[3]);
  if (port > 65535) return `${text}: port ${port} out of range`;
  const wildcard = host === '0.0.0.0' || host === '::';
  return { host, port, loopback: isLoopbackAddress(host), wildcard, key: `${host.includes(':') ? `[${host}]` : host}:${port}` };
}

// ------------------------------------------------------------------------------------------- settings

export interface HostSettings {
  readonly token: string | undefined;
  /** Extra names a browser may use in `Host` (the box's DNS name). */
  readonly hosts: readonly string[];
  /** Dashboard update interval. */
  readonly intervalMs: number;
}

const COOKIE = 'codexdns_session';
/** Served without the token: the login page's style sheet and the icon (nothing about the server). */
const PUBLIC_PATHS = new Set(['/app.css', '/favicon.ico']);
const SESSION_MS = 30 * 86_400_000;
const MAX_BODY = 4096;
const MAX_STREAMS = 16;
/** Unsent bytes a dashboard stream may hold: a reader that stopped reading is closed, not buffered for. */
const MAX_STREAM_UNSENT = 256 * 1024;
const TOP_CLIENTS = 10;

// ------------------------------------------------------------------------------------------- assets

interface Asset {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
  readonly immutable: boolean;
}

const ASSET_FILES: Record<string, { file: string; type: string; vendor?: boolean }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/owner.js': { file: 'owner.js', type: 'text/javascript; charset=utf-8' },
  '/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
  '/vendor/uPlot.iife.min.js': { file: 'uplot/dist/uPlot.iife.min.js', type: 'text/javascript; charset=utf-8', vendor: true },
  '/vendor/uPlot.min.css': { file: 'uplot/dist/uPlot.min.css', type: 'text/css; charset=utf-8', vendor: true },
};

/** Where the dashboard files are: beside this module (a copy), or in the source tree (`dist/` builds). */
export function dashboardDir(): string {
  const candidates = [path.join(__dirname, 'dashboard'), path.resolve(__dirname, '..', '..', '..', 'plugins', 'metrics', 'dashboard')];
  for (const c of candidates) if (fs.existsSync(path.join(c, 'index.html'))) return c;
  throw new Error(`the dashboard files are missing (looked in ${candidates.join(', ')})`);
}

const assetCache = new Map<string, Asset>();

function loadAsset(route: string): Asset | undefined {
  const cached = assetCache.get(route);
  if (cached !== undefined) return cached;
  const spec = ASSET_FILES[route];
  if (spec === undefined) return undefined;
  const file = spec.vendor ? require.resolve(spec.file) : path.join(dashboardDir(), spec.file);
  const body = fs.readFileSync(file);
  const asset: Asset = { body, type: spec.type, etag: `"${createHash('sha1').update(body).digest('base64url')}"`, immutable: spec.vendor === true };
  assetCache.set(route, asset);
  return asset;
}

// --------------------------------------------------------------------------------------------- host

const hosts = new WeakMap<Registry, Map<string, MetricsHost>>();

/** A plugin instance's hold on a listener. */
export interface HostLease {
  readonly host: MetricsHost;
  release(): Promise<void>;
}

/**
 * The listener for `listen` in this server process (`registry` is the process's), created and bound on first
 * use; each lease keeps it open.
 */
export async function acquireHost(registry: Registry, core: CoreMetrics, listen: HttpListen, settings: HostSettings, log: Logger): Promise<HostLease> {
  let byKey = hosts.get(registry);
  if (byKey === undefined) {
    byKey = new Map();
    hosts.set(registry, byKey);
  }
  let host = byKey.get(listen.key);
  if (host === undefined) {
    const created = new MetricsHost(registry, core, listen, settings, log);
    host = created;
    byKey.set(listen.key, created);
    created.leases++;
    try {
      await created.start();
    } catch (err) {
      created.leases--;
      byKey.delete(listen.key);
      await created.close();
      throw err;
    }
  } else {
    host.leases++;
    await host.started;
  }
  const h = host;
  let released = false;
  return {
    host: h,
    release: async () => {
      if (released) return;
      released = true;
      h.leases--;
      if (h.leases <= 0) {
        if (hosts.get(registry)?.get(listen.key) === h) hosts.get(registry)?.delete(listen.key);
        await h.close();
      }
    },
  };
}

/** Dashboard streams of every listener of a server process: open now, refused at the limit, closed for not reading. */
export function dashboardStreams(registry: Registry): { open: number; refused: number; slow: number } {
  const sum = { open: 0, refused: 0, slow: 0 };
  for (const h of hosts.get(registry)?.values() ?? []) {
    const st = h.streamStats();
    sum.open += st.open;
    sum.refused += st.refused;
    sum.slow += st.slow;
  }
  return sum;
}

/** The HTTP listeners of a server process, with their bound ports (port 0 in tests). */
export function httpListeners(registry: Registry): Array<{ listen: string; host: string; port: number }> {
  return [...(hosts.get(registry)?.values() ?? [])].map((h) => ({ listen: h.listen.key, host: h.listen.host, port: h.port }));
}

export class MetricsHost {
  leases = 0;
  started: Promise<void> = Promise.resolve();
  private readonly server: http.Server;
  private readonly views = new Map<string, BlockView>();
  private settings: HostSettings;
  private readonly sampler: Sampler;
  private samplerTimer: NodeJS.Timeout | null = null;
  private samplerEvery = 0;
  private readonly streams = new Set<http.ServerResponse>();
  private streamsRefused = 0;
  private streamsSlow = 0;
  private readonly clients = new ClientReader();
  private topClients: { at: number; data: unknown } | null = null;
  private topClientsBusy = false;
  private loginTokens = 10;
  private loginRefilled = Date.now();
  private localNames: { at: number; names: Set<string> } | null = null;
  private closed = false;

  constructor(
    private readonly registry: Registry,
    core: CoreMetrics,
    readonly listen: HttpListen,
    settings: HostSettings,
    private log: Logger,
  ) {
    this.settings = settings;
    this.server = http.createServer((req, res) => void this.handle(req, res));
    this.server.headersTimeout = 10_000;
    this.server.requestTimeout = 15_000;
    this.server.keepAliveTimeout = 5_000;
    this.server.maxHeadersCount = 64;
    this.server.maxConnections = 64;
    this.sampler = new Sampler(registry, core, () => [...this.views.values()], (s) => this.broadcast(s));
  }

  get port(): number {
    const a = this.server.address();
    return typeof a === 'object' && a !== null ? a.port : this.listen.port;
  }

  start(): Promise<void> {
    this.started = new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen({ host: this.listen.host, port: this.listen.port, exclusive: true }, () => {
        this.server.off('error', onError);
        this.server.on('error', (err) => this.log.warn('metrics HTTP server error', { error: err.message }));
        this.log.info('metrics listening', { url: `http://${this.listen.host.includes(':') ? `[${this.listen.host}]` : this.listen.host}:${this.port}/` });
        this.schedule();
        void this.tick(); // the baseline: the first sample then comes one interval later
        resolve();
      });
    });
    return this.started;
  }

  /** Points the handlers at a block's newest plugin instance (at that chain's startup). */
  attach(view: BlockView, settings: HostSettings, log: Logger): void {
    this.views.set(view.block, view);
    this.settings = settings;
    this.log = log;
    this.schedule();
  }

  /** A retired chain's instance lets go (a newer one of the same block has usually replaced it already). */
  detach(view: BlockView): void {
    if (this.views.get(view.block) === view) this.views.delete(view.block);
  }

  private schedule(): void {
    if (this.closed || this.samplerEvery === this.settings.intervalMs) return;
    if (this.samplerTimer) clearInterval(this.samplerTimer);
    this.samplerEvery = this.settings.intervalMs;
    this.samplerTimer = setInterval(() => void this.tick(), this.samplerEvery);
    this.samplerTimer.unref();
  }

  private async tick(): Promise<void> {
    try {
      await this.sampler.tick();
    } catch (err) {
      this.log.debug('dashboard sample failed', { error: errorText(err) });
    }
    if (this.streams.size > 0) void this.refreshTopClients();
  }

  private async refreshTopClients(force = false): Promise<unknown> {
    const now = Date.now();
    if (!force && this.topClients !== null && now - this.topClients.at < 2000) return this.topClients.data;
    if (this.topClientsBusy) return this.topClients?.data;
    this.topClientsBusy = true;
    try {
      const data = await this.clients.top([...this.views.values()], TOP_CLIENTS);
      this.topClients = { at: now, data };
      this.send('clients', data);
      return data;
    } finally {
      this.topClientsBusy = false;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.samplerTimer) clearInterval(this.samplerTimer);
    for (const s of this.streams) s.end();
    this.streams.clear();
    await new Promise<void>((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  // ------------------------------------------------------------------------------------------ requests

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('Cache-Control', 'no-store');
    try {
      if (!this.hostAllowed(req.headers.host)) return this.json(res, 403, { error: 'host not allowed' });
      const url = new URL(req.url ?? '/', 'http://metrics.invalid');
      const p = url.pathname;
      const method = req.method ?? 'GET';
      if (p === '/login') return await this.login(req, res, method);
      if (p === '/logout') return this.logout(res, method);
      const views = [...this.views.values()];
      const routed = p.startsWith('/api/') ? this.pluginRoute(views, method, p) : null;
      if (routed !== null && 'allow' in routed.match) {
        res.setHeader('Allow', routed.match.allow.join(', '));
        return this.json(res, 405, { error: 'method not allowed' });
      }
      if (routed === null && method !== 'GET' && method !== 'HEAD') {
        res.setHeader('Allow', 'GET, HEAD');
        return this.json(res, 405, { error: 'method not allowed' });
      }
      if (!PUBLIC_PATHS.has(p) && !this.authorized(req)) {
        if (p === '/' && /text\/html/.test(req.headers.accept ?? '')) return this.redirect(res, '/login');
        res.setHeader('WWW-Authenticate', 'Bearer realm="codexdns"');
        return this.json(res, 401, { error: 'authentication required: send Authorization: Bearer TOKEN, or log in at /login' });
      }
      if (routed !== null && 'route' in routed.match) return await this.runRoute(req, res, url, routed.match, method);
      switch (p) {
        case '/metrics': {
          const text = await this.registry.metrics();
          res.writeHead(200, { 'Content-Type': this.registry.contentType });
          res.end(method === 'HEAD' ? undefined : text);
          return;
        }
        case '/ready': {
          const ready = views.length > 0 && views[0].api.server.ready();
          return this.json(res, ready ? 200 : 503, { ready });
        }
        case '/health': {
          const h = await healthJson(views, this.registry);
          return this.json(res, h.status === 'down' ? 503 : 200, h);
        }
        case '/api/metrics/queue':
          return this.json(res, 200, queueJson(views));
        case '/api/metrics/discovery':
          return this.json(res, 200, discoveryJson(views));
        case '/api/metrics/goroutines':
          return this.json(res, 200, await goroutinesJson(views, this.registry));
        case '/api/clients':
          return this.json(res, 200, await this.clients.list(views, url.searchParams));
        case '/api/upstreams':
          return this.json(res, 200, await upstreamsJson(views, this.registry));
        case '/api/dashboard':
          return this.json(res, 200, {
            intervalMs: this.settings.intervalMs,
            historySeconds: HISTORY_SECONDS,
            blocks: views.map((v) => v.block),
            auth: this.settings.token !== undefined,
            // Which of the owner's views have data: the query log's and the filter's routes are other plugins'.
            features: {
              querylog: this.pluginRoute(views, 'GET', '/api/queries') !== null,
              filter: this.pluginRoute(views, 'GET', '/api/filter') !== null,
              clienttrack: views.some((v) => v.sources.hasClienttrack),
            },
            samples: this.sampler.history,
            clients: this.topClients?.data ?? (await this.refreshTopClients(true)),
          });
        case '/api/stream':
          return this.stream(req, res);
        case '/favicon.ico':
          res.writeHead(204);
          return void res.end();
        default:
          if (p.startsWith('/api/clients/')) {
            let ip: string;
            try {
              ip = decodeURIComponent(p.slice('/api/clients/'.length));
            } catch {
              throw new HttpError(400, 'bad client address');
            }
            return this.json(res, 200, await this.clients.one(views, ip));
          }
          if (p in ASSET_FILES) return this.asset(req, res, p, method);
          return this.json(res, 404, { error: 'not found' });
      }
    } catch (err) {
      const status = httpStatusOf(err);
      if (status !== undefined) return this.json(res, status, { error: (err as Error).message });
      this.log.warn('metrics HTTP request failed', { url: req.url, error: errorText(err) });
      if (!res.headersSent) this.json(res, 500, { error: 'internal error' });
      else res.destroy();
    }
  }

  /** The first attached block whose plugins added a route for this path (the newest chain's handlers). */
  private pluginRoute(views: readonly BlockView[], method: string, p: string): { match: RouteMatch | { allow: string[] } } | null {
    let allow: { match: { allow: string[] } } | null = null;
    for (const view of views) {
      const m = view.routes?.match(method, p) ?? null;
      if (m === null) continue;
      if ('route' in m) return { match: m };
      allow ??= { match: m };
    }
    return allow;
  }

  private async runRoute(req: http.IncomingMessage, res: http.ServerResponse, url: URL, match: RouteMatch, method: string): Promise<void> {
    let body: unknown;
    if (method === 'POST' || method === 'DELETE') {
      // A state change: a cross-site page could send a form to a loopback listener, but not JSON without a
      // preflight we never answer, and never with another Origin.
      if (!/^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? '')) {
        return this.json(res, 415, { error: 'send the request body as Content-Type: application/json' });
      }
      if (!this.sameOrigin(req.headers.origin)) return this.json(res, 403, { error: 'cross-site request refused' });
      const text = await readBody(req, MAX_BODY);
      if (text === null) return this.json(res, 413, { error: 'request too large' });
      if (text.trim() !== '') {
        try {
          body = JSON.parse(text) as unknown;
        } catch {
          return this.json(res, 400, { error: 'the body is not JSON' });
        }
      }
    }
    const result = await match.route.handler({
      method: match.route.method,
      path: url.pathname,
      params: match.params,
      query: url.searchParams,
      body,
      remoteAddress: req.socket.remoteAddress,
    });
    if (method === 'HEAD') {
      res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8' });
      return void res.end();
    }
    this.json(res, 200, result ?? { ok: true });
  }

  /** No Origin (a non-browser client), or one naming this server. */
  private sameOrigin(origin: string | undefined): boolean {
    if (origin === undefined) return true;
    if (origin === 'null') return false;
    try {
      return this.hostAllowed(new URL(origin).host);
    } catch {
      return false;
    }
  }

  private json(res: http.ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }

  private redirect(res: http.ServerResponse, to: string): void {
    res.writeHead(303, { Location: to, 'Content-Length': 0 });
    res.end();
  }

  private asset(req: http.IncomingMessage, res: http.ServerResponse, route: string, method: string): void {
    const a = loadAsset(route);
    if (a === undefined) return this.json(res, 404, { error: 'not found' });
    res.setHeader('Cache-Control', a.immutable ? 'private, max-age=86400' : 'no-cache');
    res.setHeader('ETag', a.etag);
    if (a.type.startsWith('text/html')) this.securityPolicy(res);
    if (req.headers['if-none-match'] === a.etag) {
      res.writeHead(304);
      return void res.end();
    }
    res.writeHead(200, { 'Content-Type': a.type, 'Content-Length': a.body.length });
    res.end(method === 'HEAD' ? undefined : a.body);
  }

  private securityPolicy(res: http.ServerResponse): void {
    res.setHeader(
      'Content-Security-Policy',
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
  }

  // ------------------------------------------------------------------------------------------- streams

  /** Open dashboard streams, and those refused (limit) or closed for not reading, since start. */
  streamStats(): { open: number; refused: number; slow: number } {
    return { open: this.streams.size, refused: this.streamsRefused, slow: this.streamsSlow };
  }

  private stream(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (this.streams.size >= MAX_STREAMS) {
      this.streamsRefused++;
      return this.json(res, 503, { error: 'too many dashboard streams' });
    }
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
    res.write(`retry: 2000\n\n`);
    this.streams.add(res);
    req.socket.setTimeout(0);
    const done = (): void => {
      this.streams.delete(res);
    };
    req.on('close', done);
    res.on('error', done);
    if (this.topClients !== null) this.sendTo(res, 'clients', this.topClients.data);
  }

  private broadcast(s: Sample): void {
    this.send('sample', s);
  }

  private send(event: string, data: unknown): void {
    if (this.streams.size === 0) return;
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const s of this.streams) {
      if (s.writableLength > MAX_STREAM_UNSENT) {
        this.streamsSlow++;
        this.streams.delete(s);
        s.destroy();
        continue;
      }
      s.write(frame);
    }
  }

  private sendTo(res: http.ServerResponse, event: string, data: unknown): void {
    res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  // ---------------------------------------------------------------------------------------------- access

  /** Names a browser may have typed to reach us; anything else in `Host` is a rebinding attempt (or a typo). */
  private hostAllowed(header: string | undefined): boolean {
    if (header === undefined || header === '') return false;
    let name = header.trim().toLowerCase();
    if (name.startsWith('[')) {
      const end = name.indexOf(']');
      if (end === -1) return false;
      name = name.slice(1, end);
    } else {
      const colon = name.lastIndexOf(':');
      if (colon !== -1) name = name.slice(0, colon);
    }
    if (name.endsWith('.')) name = name.slice(0, -1);
    const l = this.listen;
    if (name === l.host.toLowerCase()) return true;
    if (this.settings.hosts.some((h) => h.toLowerCase().replace(/\.$/, '') === name)) return true;
    if (l.loopback && (name === 'localhost' || isLoopbackAddress(name))) return true;
    if (l.wildcard) return this.local().has(name);
    return false;
  }

  private local(): Set<string> {
    const now = Date.now();
    if (this.localNames !== null && now - this.localNames.at < 30_000) return this.localNames.names;
    const names = new Set<string>(['localhost', os.hostname().toLowerCase()]);
    for (const list of Object.values(os.networkInterfaces())) {
      for (const a of list ?? []) names.add(a.address.toLowerCase().split('%')[0]);
    }
    this.localNames = { at: now, names };
    return names;
  }

  private authorized(req: http.IncomingMessage): boolean {
    const token = this.settings.token;
    if (token === undefined) return true;
    const auth = req.headers.authorization;
    if (auth !== undefined) {
      const m = /^Bearer\s+(.+)$/i.exec(auth.trim());
      if (m !== null && sameSecret(m[1], token)) return true;
    }
    const cookie = readCookie(req.headers.cookie, COOKIE);
    return cookie !== undefined && this.validSession(cookie, token);
  }

  private sessionMac(issued: number, token: string): string {
    return createHmac('sha256', token).update(`codexdns-session|${issued}|${this.listen.key}`).digest('base64url');
  }

  private validSession(value: string, token: string): boolean {
    const m = /^(\d{1,15})\.([A-Za-z0-9_-]{43})$/.exec(value);
    if (m === null) return false;
    const issued = Number(m[1]);
    const age = Date.now() - issued;
    if (age < -60_000 || age > SESSION_MS) return false;
    return sameSecret(m[2], this.sessionMac(issued, token));
  }

  private async login(req: http.IncomingMessage, res: http.ServerResponse, method: string): Promise<void> {
    const token = this.settings.token;
    if (token === undefined) return this.redirect(res, '/');
    if (method === 'GET' || method === 'HEAD') return this.loginPage(res, 200);
    if (method !== 'POST') {
      res.setHeader('Allow', 'GET, POST');
      return this.json(res, 405, { error: 'method not allowed' });
    }
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== 'null') {
      let originHost: string;
      try {
        originHost = new URL(origin).host;
      } catch {
        return this.json(res, 403, { error: 'bad origin' });
      }
      if (!this.hostAllowed(originHost)) return this.json(res, 403, { error: 'cross-site login refused' });
    }
    const body = await readBody(req, MAX_BODY);
    if (body === null) return this.json(res, 413, { error: 'request too large' });
    if (!this.takeLoginToken()) return this.json(res, 429, { error: 'too many login attempts; wait a minute' });
    const given = new URLSearchParams(body).get('token') ?? '';
    if (!sameSecret(given, token)) {
      this.log.warn('dashboard login failed', { from: req.socket.remoteAddress });
      return this.loginPage(res, 401, 'That is not the token.');
    }
    this.loginTokens = Math.min(10, this.loginTokens + 1);
    const issued = Date.now();
    res.setHeader('Set-Cookie', `${COOKIE}=${issued}.${this.sessionMac(issued, token)}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${SESSION_MS / 1000}`);
    this.redirect(res, '/');
  }

  private loginPage(res: http.ServerResponse, status: number, error?: string): void {
    this.securityPolicy(res);
    const body = LOGIN_PAGE.replace('<!--error-->', error ? `<p class="error" role="alert">${error}</p>` : '');
    res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  }

  private logout(res: http.ServerResponse, method: string): void {
    if (method !== 'POST') {
      res.setHeader('Allow', 'POST');
      return this.json(res, 405, { error: 'method not allowed' });
    }
    res.setHeader('Set-Cookie', `${COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`);
    this.redirect(res, this.settings.token === undefined ? '/' : '/login');
  }

  /** At most 10 login attempts in a burst, then one every 6 s: guessing a token over HTTP goes nowhere. */
  private takeLoginToken(): boolean {
    const now = Date.now();
    this.loginTokens = Math.min(10, this.loginTokens + (now - this.loginRefilled) / 6000);
    this.loginRefilled = now;
    if (this.loginTokens < 1) return false;
    this.loginTokens -= 1;
    return true;
  }
}

const LOGIN_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>codexdns — log in</title>
<link rel="stylesheet" href="/app.css">
</head>
<body class="login">
<main>
<h1>codexdns</h1>
<form method="post" action="/login">
<label for="token">Token (the <code>token</code> of the metrics plugin in Corefile.yaml)</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Log in</button>
</form>
<!--error-->
</main>
</body>
</html>
`;

/** Constant-time comparison of two secrets of any length. */
function sameSecret(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

function readBody(req: http.IncomingMessage, max: number): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) over = true;
      else chunks.push(c);
    });
    req.on('end', () => resolve(over ? null : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
