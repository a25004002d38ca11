import { performance } from 'node:perf_hooks';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Chain, PluginSetupError, type ChainEntry, type ChainServices } from '../core/chain';
import { Dispatcher, type Route } from '../core/dispatcher';
import { createLogger, type LogSink, type Logger } from '../core/log';
import { ListenError, TcpListener, UdpListener, isWildcard, type ListenSpec } from '../core/listeners';
import { MetricsHub } from '../core/metricsRegistry';
import type { BlockInfo } from '../core/plugin';
import { LazyStorage } from './storageAccess';
import { SharedState } from '../core/retained';
import { ConfigError, OptionError, formatIssue, optionPath, type ConfigIssue } from '../config/errors';
import { displayName, loadConfigFile, parseConfig, type CoreConfig, type PluginCatalog, type ServerBlockConfig } from '../config/load';
import { builtinCatalog } from './catalog';

export interface ServerOptions {
  /** The configuration file (reloads re-read it). */
  readonly configFile: string;
  /** Configuration text to use instead of reading the file at start (tests); reloads still read the file. */
  readonly configText?: string;
  readonly catalog?: PluginCatalog;
  /** Where log lines go (tests capture them). */
  readonly logSink?: LogSink;
  /** Watch the file and reload on change (default: the file's `reload.watch`). */
  readonly watch?: boolean;
}

export interface ReloadResult {
  readonly ok: boolean;
  readonly error?: string;
}

type AnyListener = UdpListener | TcpListener;

function listenKey(spec: ListenSpec): string {
  return `${spec.transport}://${spec.host.includes(':') ? `[${spec.host}]` : spec.host}:${spec.port}`;
}

/**
 * The running server: the configuration, one chain per server block, the listeners, and reload. A reload
 * builds new chains beside the old ones and swaps them in at once; sockets whose address is unchanged stay open.
 */
export class CodexServer {
  readonly metrics = new MetricsHub();
  readonly dispatcher: Dispatcher;
  log: Logger;
  private config: CoreConfig | null = null;
  private chains: Chain[] = [];
  private readonly listeners = new Map<string, AnyListener>();
  /** Plugins' `api.shared` values: one set per server, living as long as a chain that asked for them. */
  private readonly shared = new SharedState();
  private storage: LazyStorage | null = null;
  private ready = false;
  private watcher: fs.FSWatcher | null = null;
  /** Folders of custom plugin files (and their local imports), watched so a saved plugin reloads like the file. */
  private readonly pluginWatchers = new Map<string, { watcher: fs.FSWatcher; names: Set<string> }>();
  private reloadTimer: NodeJS.Timeout | null = null;
  private refreshTimer: NodeJS.Timeout | null = null;
  private reloading: Promise<ReloadResult> = Promise.resolve({ ok: true });
  private readonly catalog: PluginCatalog;
  private stopped = false;
  readonly reloads = { success: 0, failure: 0 };

  constructor(private readonly opts: ServerOptions) {
    this.catalog = opts.catalog ?? builtinCatalog;
    this.log = createLogger({ level: 'info', format: 'text' }, opts.logSink);
    this.dispatcher = new Dispatcher(this.log);
    const reloads = this.metrics.factory('config').counter({ name: 'reloads_total', help: 'Configuration reloads by result', labelNames: ['result'] as const });
    this.reloadCounter = { success: reloads.labels('success'), failure: reloads.labels('failure') };
  }

  private readonly reloadCounter: { success: { inc(): void }; failure: { inc(): void } };

  get configuration(): CoreConfig | null {
    return this.config;
  }

  /** Loads the configuration, builds the chains, binds every listener; throws ConfigError on any problem. */
  async start(): Promise<void> {
    const cfg = this.opts.configText !== undefined
      ? await parseConfig(this.opts.configText, this.opts.configFile, this.catalog)
      : await loadConfigFile(this.opts.configFile, this.catalog);
    this.storage = new LazyStorage(cfg.storage, cfg.dir, this.log.child('storage'));
    this.useLogger(createLogger(cfg.log, this.opts.logSink));
    for (const w of [...cfg.warnings, ...cfg.unguarded]) this.log.warn(formatIssue(w));
    const chains = await this.buildChains(cfg, [], this.log);
    try {
      await this.bindListeners(cfg);
    } catch (err) {
      await Promise.all(chains.map((c) => c.discard()));
      await this.closeAllListeners();
      throw err;
    }
    this.config = cfg;
    this.chains = chains;
    this.dispatcher.setRoutes(this.routesFor(cfg, chains));
    this.ready = true;
    for (const c of chains) await c.startup('startup');
    this.refreshTimer = setInterval(() => void this.refreshWildcards(), 30_000);
    this.refreshTimer.unref();
    if (this.opts.watch ?? cfg.reload.watch) {
      this.watch(cfg);
      this.watchPlugins(cfg);
    }
    this.log.info('codexdns started', { listen: [...this.listeners.keys()].join(','), config: cfg.file });
  }

  /** The port a listen entry got (useful with port 0). */
  portOf(listenText: string): number {
    for (const [key, l] of this.listeners) {
      if (key === listenText || l.spec.text === listenText) return l.port;
    }
    throw new Error(`no listener ${listenText}`);
  }

  listenerPorts(): { transport: 'udp' | 'tcp'; host: string; port: number }[] {
    return [...this.listeners.values()].map((l) => ({ transport: l.spec.transport, host: l.spec.host, port: l.port }));
  }

  isReady(): boolean {
    return this.ready;
  }

  /** Re-reads the file; a file that fails validation, or a plugin whose setup throws, keeps the old chains serving. */
  reload(): Promise<ReloadResult> {
    this.reloading = this.reloading.then(() => this.doReload());
    return this.reloading;
  }

  private async doReload(): Promise<ReloadResult> {
    if (this.stopped || !this.config) return { ok: false, error: 'server is not running' };
    let cfg: CoreConfig;
    let chains: Chain[];
    let log: Logger;
    try {
      cfg = await loadConfigFile(this.opts.configFile, this.catalog);
      // An edited `log:` block (level, format) applies from this reload on, to the new chain's plugins too.
      log = createLogger(cfg.log, this.opts.logSink);
      chains = await this.buildChains(cfg, this.chains, log);
    } catch (err) {
      return this.reloadFailed(err);
    }
    const added: string[] = [];
    try {
      added.push(...(await this.bindListeners(cfg)));
    } catch (err) {
      for (const key of added) await this.closeListener(key);
      await Promise.all(chains.map((c) => c.discard()));
      return this.reloadFailed(err);
    }
    const old = this.chains;
    this.chains = chains;
    this.config = cfg;
    this.useLogger(log);
    this.dispatcher.setRoutes(this.routesFor(cfg, chains));
    const keep = new Set(this.wantedListenKeys(cfg));
    for (const key of [...this.listeners.keys()]) if (!keep.has(key)) await this.closeListener(key, cfg.shutdownGraceMs);
    for (const c of chains) await c.startup('reload');
    await Promise.all(old.map((c) => c.shutdown('reload', cfg.shutdownGraceMs)));
    for (const c of chains) c.retained.detachPrevious();
    this.reloads.success++;
    this.reloadCounter.success.inc();
    for (const w of [...cfg.warnings, ...cfg.unguarded]) this.log.warn(formatIssue(w));
    if (this.opts.watch ?? cfg.reload.watch) this.watchPlugins(cfg);
    this.log.info('configuration reloaded', { blocks: chains.length, plugins: chains.map((c) => c.entries.map((e) => e.name).join('>')).join(' | ') });
    return { ok: true };
  }

  private reloadFailed(err: unknown): ReloadResult {
    this.reloads.failure++;
    this.reloadCounter.failure.inc();
    const message = err instanceof Error ? err.message : String(err);
    this.log.error('reload failed; the previous configuration keeps serving', { error: message });
    return { ok: false, error: message };
  }

  /** The configured logger, for the server, the dispatcher and the storage (the chains get it when built). */
  private useLogger(log: Logger): void {
    this.log = log;
    this.dispatcher.log = log;
    this.storage?.setLogger(log.child('storage'));
  }

  private async buildChains(cfg: CoreConfig, previous: readonly Chain[], log: Logger): Promise<Chain[]> {
    const built: Chain[] = [];
    const services: ChainServices = {
      log,
      metrics: this.metrics,
      storage: this.storage as LazyStorage,
      wireStats: () => this.dispatcher.counters,
      ready: () => this.ready,
      shared: this.shared,
    };
    for (const block of cfg.servers) {
      const info = this.blockInfo(cfg, block);
      const prev = previous.find((c) => c.block.name === block.name && sameBlock(c.block, info));
      const guard = this.defaultGuard(block);
      const entries: readonly ChainEntry[] = guard === null ? block.plugins : [guard, ...block.plugins];
      const chain = new Chain(info, entries, services, prev?.retained);
      try {
        await chain.setup();
      } catch (err) {
        await Promise.all(built.map((c) => c.discard()));
        throw this.setupError(cfg, block, err instanceof PluginSetupError && guard !== null ? new PluginSetupError(err.plugin, Math.max(0, err.index - 1), err.cause) : err);
      }
      built.push(chain);
    }
    return built;
  }

  /**
   * Safe by default: a block with no guard (acl, ratelimit's query limits) is not an open resolver. It gets the
   * acl plugin with `allow: [local]` in front of its chain: loopback and the private subnets of this machine's
   * interfaces are answered, anyone else gets REFUSED (counted in codexdns_acl_refused_total) and is not
   * tracked. `codexdns validate` warns about such a block.
   */
  private defaultGuard(block: ServerBlockConfig): ChainEntry | null {
    const guarded = block.plugins.some((p) => (typeof p.definition.role === 'function' ? p.definition.role(p.options as never) : p.definition.role) === 'guard');
    if (guarded) return null;
    const acl = this.catalog.get('acl') ?? builtinCatalog.get('acl');
    if (acl === undefined) return null;
    const options = { allow: ['local'], deny: [], action: 'refuse', cache_size: 10_000, local_refresh: 30_000 };
    return { name: 'acl', definition: acl, options, signature: `implicit:${JSON.stringify(options)}` };
  }

  private setupError(cfg: CoreConfig, block: ServerBlockConfig, err: unknown): Error {
    if (!(err instanceof PluginSetupError)) return err instanceof Error ? err : new Error(String(err));
    const entry = block.plugins[err.index];
    const cause = err.cause;
    const file = displayName(cfg.file);
    const plugin = entry.source === 'builtin' ? entry.name : `${entry.name} (${entry.source})`;
    let issue: ConfigIssue;
    if (cause instanceof OptionError) {
      const pos = cfg.positions.of([...entry.optionsPath, ...optionPath(cause.option)]);
      issue = { file, line: pos.line, col: pos.col, plugin, option: cause.option, message: cause.message, severity: 'error' };
    } else {
      const pos = cfg.positions.of(entry.path);
      issue = { file, line: pos.line, col: pos.col, plugin, message: cause instanceof Error ? cause.message : String(cause), severity: 'error' };
    }
    return new ConfigError([issue]);
  }

  private blockInfo(cfg: CoreConfig, block: ServerBlockConfig): BlockInfo {
    const keys = block.listen.map(listenKey);
    return {
      name: block.name,
      zones: block.zones,
      listen: block.listen.map((l) => l.text),
      configDir: cfg.dir,
      configFile: cfg.file,
      localAddresses: () => keys.flatMap((k) => {
        const l = this.listeners.get(k);
        return l instanceof UdpListener ? l.addresses().map((a) => `${a}:${l.port}`) : l ? [`${l.spec.host}:${l.port}`] : [];
      }),
    };
  }

  private wantedListenKeys(cfg: CoreConfig): string[] {
    return cfg.servers.flatMap((s) => s.listen.map(listenKey));
  }

  /** Binds listeners not bound yet; returns their keys. UDP first, so a TCP entry on port 0 can share its port. */
  private async bindListeners(cfg: CoreConfig): Promise<string[]> {
    const added: string[] = [];
    const specs = cfg.servers.flatMap((s) => s.listen.map((l) => ({ l, block: s })));
    specs.sort((a, b) => (a.l.transport === b.l.transport ? 0 : a.l.transport === 'udp' ? -1 : 1));
    const zeroPorts = new Map<string, number>();
    for (const { l, block } of specs) {
      const key = listenKey(l);
      const existing = this.listeners.get(key);
      if (existing) {
        if (existing instanceof TcpListener) existing.setLimits(block.tcp);
        continue;
      }
      try {
        if (l.transport === 'udp') {
          const listener = new UdpListener(l, this.dispatcher.sinkFor(key));
          await listener.start();
          this.listeners.set(key, listener);
          if (l.port === 0) zeroPorts.set(l.host, listener.port);
        } else {
          const shared = l.port === 0 ? zeroPorts.get(l.host) : undefined;
          let listener = new TcpListener(shared ? { ...l, port: shared } : l, this.dispatcher.sinkFor(key), block.tcp);
          try {
            await listener.start();
          } catch (err) {
            if (!shared) throw err;
            listener = new TcpListener(l, this.dispatcher.sinkFor(key), block.tcp);
            await listener.start();
          }
          this.listeners.set(key, listener);
        }
        added.push(key);
      } catch (err) {
        for (const k of added) await this.closeListener(k);
        if (err instanceof ListenError) {
          const idx = block.listen.indexOf(l);
          const pos = cfg.positions.of([...block.path, 'listen', idx]);
          throw new ConfigError([{ file: displayName(cfg.file), line: pos.line, col: pos.col, option: 'listen', message: err.message, severity: 'error' }]);
        }
        throw err;
      }
    }
    return added;
  }

  private routesFor(cfg: CoreConfig, chains: Chain[]): Map<string, Route[]> {
    const routes = new Map<string, Route[]>();
    cfg.servers.forEach((block, i) => {
      for (const l of block.listen) {
        const key = listenKey(l);
        const list = routes.get(key) ?? [];
        for (const zone of block.zones) list.push({ zone, chain: chains[i], server: block.name, ednsSize: block.ednsSize });
        routes.set(key, list);
      }
    });
    return routes;
  }

  private async closeListener(key: string, graceMs = 0): Promise<void> {
    const l = this.listeners.get(key);
    this.listeners.delete(key);
    if (l instanceof TcpListener) await l.close(graceMs);
    else if (l) await l.close();
  }

  private async closeAllListeners(graceMs = 0): Promise<void> {
    await Promise.all([...this.listeners.keys()].map((k) => this.closeListener(k, graceMs)));
  }

  private async refreshWildcards(): Promise<void> {
    for (const l of this.listeners.values()) {
      if (l instanceof UdpListener && isWildcard(l.spec.host)) {
        await l.refresh((err) => this.log.warn('cannot bind a new local address', { error: err.message }));
      }
    }
  }

  private watch(cfg: CoreConfig): void {
    const base = path.basename(cfg.file);
    try {
      this.watcher = fs.watch(cfg.dir, (_event, name) => {
        if (name !== null && name !== base) return;
        this.scheduleReload('configuration file changed; reloading');
      });
      this.watcher.on('error', (err) => this.log.warn('cannot watch the configuration file', { error: err.message }));
      this.watcher.unref();
    } catch (err) {
      this.log.warn('cannot watch the configuration file; SIGHUP still reloads', { error: (err as Error).message });
    }
  }

  /** One reload after a burst of saves (an editor writes a file in several steps). */
  private scheduleReload(why: string, fields?: Record<string, string>): void {
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => {
      this.log.info(why, fields);
      void this.reload();
    }, this.config?.reload.debounceMs ?? 500);
    this.reloadTimer.unref();
  }

  /**
   * Watches every custom plugin file of `cfg` and the files it required from its own folder or below (not
   * packages: nothing under node_modules), by folder — an editor that saves by renaming replaces the file a per-file watch would hold. An ES module's
   * own imports are not known to the loader: its file is watched, the files it imports are not.
   */
  private watchPlugins(cfg: CoreConfig): void {
    const files = new Set<string>();
    const add = (file: string, home: string, depth: number): void => {
      if (files.has(file) || files.size >= 256 || depth > 16 || !file.startsWith(home) || file.includes(`${path.sep}node_modules${path.sep}`)) return;
      files.add(file);
      for (const child of require.cache[file]?.children ?? []) add(child.filename, home, depth + 1);
    };
    for (const b of cfg.servers) {
      for (const p of b.plugins) if (p.source !== 'builtin' && path.isAbsolute(p.source)) add(p.source, path.dirname(p.source) + path.sep, 0);
    }
    const byDir = new Map<string, Set<string>>();
    for (const f of files) {
      const dir = path.dirname(f);
      let names = byDir.get(dir);
      if (names === undefined) byDir.set(dir, (names = new Set()));
      names.add(path.basename(f));
    }
    for (const [dir, w] of this.pluginWatchers) {
      if (byDir.has(dir)) continue;
      w.watcher.close();
      this.pluginWatchers.delete(dir);
    }
    for (const [dir, names] of byDir) {
      const existing = this.pluginWatchers.get(dir);
      if (existing !== undefined) {
        existing.names.clear();
        for (const n of names) existing.names.add(n);
        continue;
      }
      try {
        const entry = { watcher: fs.watch(dir, (_event, name) => {
          if (name !== null && entry.names.has(name)) this.scheduleReload('plugin file changed; reloading', { file: path.join(dir, name) });
        }), names };
        entry.watcher.on('error', (err) => this.log.warn('cannot watch a plugin file', { dir, error: err.message }));
        entry.watcher.unref();
        this.pluginWatchers.set(dir, entry);
      } catch (err) {
        this.log.warn('cannot watch a plugin file; save Corefile.yaml or send SIGHUP to reload it', { dir, error: (err as Error).message });
      }
    }
  }

  /** Stops taking queries, lets in-flight ones finish (bounded by `shutdown_grace`), runs shutdown hooks. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.reloading.catch(() => undefined);
    this.watcher?.close();
    for (const w of this.pluginWatchers.values()) w.watcher.close();
    this.pluginWatchers.clear();
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    const grace = this.config?.shutdownGraceMs ?? 5000;
    const stopUntil = performance.now() + grace;
    this.dispatcher.stopAccepting();
    const tcpClosing = Promise.all([...this.listeners.entries()].filter(([, l]) => l instanceof TcpListener).map(([k]) => this.closeListener(k, grace)));
    await Promise.all(this.chains.map((c) => c.shutdown('shutdown', grace)));
    await tcpClosing;
    await this.closeAllListeners();
    // A write blocked by another session's lock must not hold the exit past the grace (plugins have flushed
    // what they could and reported what they could not).
    await this.storage?.close(Math.max(500, stopUntil - performance.now()));
    this.ready = false;
    this.log.info('codexdns stopped');
  }
}

function sameBlock(a: BlockInfo, b: BlockInfo): boolean {
  return a.zones.join(',') === b.zones.join(',') && a.listen.join(',') === b.listen.join(',');
}
