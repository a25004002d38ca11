import { AsyncSeriesBailHook } from 'tapable';
import type { FullTap } from 'tapable';

type Tap = FullTap;
import { performance } from 'node:perf_hooks';
import type { QueryContext, ChainRunner } from './context';
import { createServerHooks, type ServerHooks } from './hooks';
import type { Logger } from './log';
import type { MetricsHub } from './metricsRegistry';
import type { AnyPluginDefinition, BlockInfo, PluginApi, ServerIntrospection, StorageAccess, WireStats } from './plugin';
import { DnsResponse } from './response';
import type { TapTiming } from './timing';
import { Rcode } from './wire/constants';
import { RetainedState } from './retained';
import { TimerSet } from './timers';
import { RepeatingWarning } from './primitives/rateLimitedLog';

/** One plugin entry of a server block, validated. */
export interface ChainEntry {
  readonly name: string;
  readonly definition: AnyPluginDefinition;
  readonly options: Record<string, unknown>;
  /** Stable text of the options (and of the plugin file's version for custom plugins): equal means state survives a reload. */
  readonly signature: string;
}

/** Process-wide services a chain hands to its plugins. */
export interface ChainServices {
  readonly log: Logger;
  readonly metrics: MetricsHub;
  readonly storage: StorageAccess;
  readonly wireStats: () => WireStats;
  readonly ready: () => boolean;
}

/** Raised by a plugin's setup; says which plugin so the loader can point at its line. */
export class PluginSetupError extends Error {
  readonly plugin: string;
  readonly index: number;
  override readonly cause: unknown;
  constructor(plugin: string, index: number, cause: unknown) {
    super(`plugin ${plugin}: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = 'PluginSetupError';
    this.plugin = plugin;
    this.index = index;
    this.cause = cause;
  }
}

type QueryHook = AsyncSeriesBailHook<[QueryContext], DnsResponse | undefined>;
type AnyFn = (...args: unknown[]) => unknown;
type Callback = (err: unknown, result?: DnsResponse) => void;

/**
 * The plugin chain of one server block: its hooks, its plugins' setup (two phases), and the walk.
 * A reload builds a new Chain beside the old one and swaps it in; retained state moves across.
 */
export class Chain implements ChainRunner {
  readonly hooks: ServerHooks = createServerHooks();
  readonly block: BlockInfo;
  readonly entries: readonly ChainEntry[];
  readonly timings: TapTiming[] = [];
  /** Queries currently being handled by this chain; a replaced chain is shut down once this reaches 0. */
  inFlight = 0;
  private readonly published = new Map<string, object>();
  private readonly rest = new Map<number, QueryHook>();
  private readonly timers = new TimerSet();
  readonly retained: RetainedState;
  private registering: { name: string; index: number } | null = null;
  private readonly log: Logger;
  /** A failing plugin can fail every query: say so once per interval, with the count, not once per query. */
  private readonly queryFailures: RepeatingWarning;
  private readonly responseFailures: RepeatingWarning;
  private lastFailure = '';

  constructor(block: BlockInfo, entries: readonly ChainEntry[], private readonly services: ChainServices, previous?: RetainedState) {
    this.block = block;
    this.entries = entries;
    this.log = services.log;
    this.queryFailures = new RepeatingWarning({ intervalMs: 10_000, emit: (count) => this.log.warn('queries failed in the chain (answered SERVFAIL)', { count, last: this.lastFailure }) });
    this.responseFailures = new RepeatingWarning({ intervalMs: 10_000, emit: (count) => this.log.warn('response hook failed (the unmodified response was sent)', { count, last: this.lastFailure }) });
    this.retained = new RetainedState(previous);
    this.hooks.query.intercept({ register: (tap) => this.wrapQueryTap(tap) });
    this.hooks.response.intercept({ register: (tap) => this.wrapTimedTap(tap, 'response') });
  }

  /** Runs both setup phases; on failure nothing of this chain stays alive. */
  async setup(): Promise<void> {
    const apis: PluginApi[] = [];
    for (let i = 0; i < this.entries.length; i++) {
      const e = this.entries[i];
      try {
        const own = e.definition.declare ? e.definition.declare({ block: this.block }, e.options) : {};
        this.published.set(e.name, own);
        apis.push(this.apiFor(e, i, own));
      } catch (err) {
        await this.abandon();
        throw new PluginSetupError(e.name, i, err);
      }
    }
    for (let i = 0; i < this.entries.length; i++) {
      const e = this.entries[i];
      this.registering = { name: e.name, index: i };
      try {
        await e.definition.setup(apis[i], e.options);
      } catch (err) {
        this.registering = null;
        await this.abandon();
        throw new PluginSetupError(e.name, i, err);
      }
    }
    this.registering = null;
    this.buildRest();
  }

  /** Drops a chain that was built but never swapped in: its own state goes, state it took over goes back. */
  async discard(): Promise<void> {
    await this.abandon();
  }

  private async abandon(): Promise<void> {
    this.timers.clearAll();
    await this.retained.disposeFresh(this.log);
  }

  private apiFor(e: ChainEntry, index: number, own: object): PluginApi {
    const log = this.services.log.child(e.name);
    const chain = this;
    const introspection: ServerIntrospection = {
      tapTimings: () => chain.timings,
      wireStats: this.services.wireStats,
      ready: this.services.ready,
      pluginOptions: (name) => chain.entries.find((x) => x.name === name)?.options,
    };
    return {
      name: e.name,
      index,
      hooks: this.hooks,
      own,
      hooksOf: (plugin) => this.published.get(plugin as string) as never,
      block: this.block,
      log,
      metrics: this.services.metrics.factory(e.name),
      storage: this.services.storage,
      timers: this.timers,
      server: introspection,
      resolvePath: (p) => resolveAgainst(this.block.configDir, p),
      retain: (key, create, dispose) => this.retained.get(`${this.block.name}/${e.name}/${key}`, e.signature, create, dispose),
    };
  }

  private currentRegistration(tap: Tap): { name: string; index: number } {
    if (this.registering) return this.registering;
    const idx = this.entries.findIndex((e) => e.name === tap.name);
    return { name: tap.name, index: idx === -1 ? this.entries.length : idx };
  }

  /**
   * Every `query` tap is wrapped once, here: it records its chain position on the context (for `next()`),
   * stamps the plugin that answered, and feeds its timing slot when an observer is bound.
   */
  private wrapQueryTap(tap: Tap): Tap {
    const { name, index } = this.currentRegistration(tap);
    const timing: TapTiming = { plugin: name, hook: 'query', observe: null };
    this.timings.push(timing);
    const fn = (tap as Tap & { fn: AnyFn }).fn;
    let wrapped: AnyFn;
    if (tap.type === 'async') {
      wrapped = (ctx: unknown, cb: unknown) => {
        const c = ctx as QueryContext;
        const done = cb as Callback;
        c.position = index;
        const observe = timing.observe;
        const start = observe === null ? 0 : performance.now();
        fn(c, (err: unknown, res?: DnsResponse) => {
          if (observe !== null) observe((performance.now() - start) / 1000);
          if (res !== undefined && res.plugin === '') res.plugin = name;
          done(err, res);
        });
      };
    } else if (tap.type === 'promise') {
      wrapped = (ctx: unknown) => {
        const c = ctx as QueryContext;
        c.position = index;
        const observe = timing.observe;
        const start = observe === null ? 0 : performance.now();
        return (fn(c) as Promise<DnsResponse | undefined>).then((res) => {
          if (observe !== null) observe((performance.now() - start) / 1000);
          if (res !== undefined && res.plugin === '') res.plugin = name;
          return res;
        });
      };
    } else {
      wrapped = (ctx: unknown) => {
        const c = ctx as QueryContext;
        c.position = index;
        const observe = timing.observe;
        const start = observe === null ? 0 : performance.now();
        const res = fn(c) as DnsResponse | undefined;
        if (observe !== null) observe((performance.now() - start) / 1000);
        if (res !== undefined && res.plugin === '') res.plugin = name;
        return res;
      };
    }
    return Object.assign({}, tap, { fn: wrapped as Tap['fn'], stage: index, chainIndex: index });
  }

  private wrapTimedTap(tap: Tap, hook: string): Tap {
    const { name, index } = this.currentRegistration(tap);
    const timing: TapTiming = { plugin: name, hook, observe: null };
    this.timings.push(timing);
    const fn = (tap as Tap & { fn: AnyFn }).fn;
    let wrapped: AnyFn;
    if (tap.type === 'async') {
      wrapped = (a: unknown, b: unknown, cb: unknown) => {
        const observe = timing.observe;
        if (observe === null) return fn(a, b, cb);
        const start = performance.now();
        return fn(a, b, (err: unknown, res: unknown) => {
          observe((performance.now() - start) / 1000);
          (cb as (e: unknown, r: unknown) => void)(err, res);
        });
      };
    } else if (tap.type === 'promise') {
      wrapped = (a: unknown, b: unknown) => {
        const observe = timing.observe;
        if (observe === null) return fn(a, b);
        const start = performance.now();
        return (fn(a, b) as Promise<unknown>).finally(() => observe((performance.now() - start) / 1000));
      };
    } else {
      wrapped = (a: unknown, b: unknown) => {
        const observe = timing.observe;
        if (observe === null) return fn(a, b);
        const start = performance.now();
        try {
          return fn(a, b);
        } finally {
          observe((performance.now() - start) / 1000);
        }
      };
    }
    return Object.assign({}, tap, { fn: wrapped as Tap['fn'], stage: index });
  }

  /** For each plugin position, a bail hook holding only the taps below it: what `ctx.next()` runs. */
  private buildRest(): void {
    const taps = this.hooks.query.taps as unknown as (Tap & { fn: AnyFn; chainIndex: number })[];
    const positions = new Set<number>([-1, ...taps.map((t) => t.chainIndex)]);
    for (const pos of positions) {
      const hook: QueryHook = new AsyncSeriesBailHook<[QueryContext], DnsResponse | undefined>(['ctx']);
      for (const t of taps) {
        if (t.chainIndex <= pos) continue;
        const opts = { name: t.name, stage: t.stage };
        // The functions are already wrapped: tap them as they are, without going through our interceptor.
        if (t.type === 'async') hook.tapAsync(opts, t.fn as never);
        else if (t.type === 'promise') hook.tapPromise(opts, t.fn as never);
        else hook.tap(opts, t.fn as never);
      }
      this.rest.set(pos, hook);
    }
  }

  /** Walks the chain for one query and calls `done` with the response to write (never fails). */
  handle(ctx: QueryContext, done: (res: DnsResponse) => void): void {
    this.inFlight++;
    this.hooks.query.callAsync(ctx, (err, res) => {
      let answer = res;
      if (err) {
        const plugin = ctx.position >= 0 ? this.entries[ctx.position]?.name : undefined;
        this.lastFailure = `${plugin ?? 'chain'}: ${err instanceof Error ? err.message : String(err)}`;
        this.queryFailures.hit();
        answer = ctx.reply(Rcode.SERVFAIL);
      } else if (answer === undefined) {
        answer = ctx.reply(Rcode.SERVFAIL);
      }
      const first = answer;
      this.hooks.response.callAsync(first, ctx, (err2, final) => {
        this.inFlight--;
        if (err2) {
          this.lastFailure = err2 instanceof Error ? err2.message : String(err2);
          this.responseFailures.hit();
        }
        done(err2 || final === undefined ? first : final);
      });
    });
  }

  runFrom(ctx: QueryContext, afterPosition: number): Promise<DnsResponse> {
    const hook = this.rest.get(afterPosition) ?? this.rest.get(-1);
    return new Promise((resolve, reject) => {
      if (hook === undefined) return resolve(ctx.reply(Rcode.SERVFAIL));
      hook.callAsync(ctx, (err, res) => {
        if (err) reject(err instanceof Error ? err : new Error(String(err)));
        else resolve(res ?? ctx.reply(Rcode.SERVFAIL));
      });
    });
  }

  async startup(reason: 'startup' | 'reload'): Promise<void> {
    await this.hooks.startup.promise({ reason });
    if (reason === 'reload') await this.hooks.reload.promise({ reason });
  }

  /**
   * Waits (bounded) for in-flight queries, then runs the plugins' shutdown hooks and drops timers and the
   * state that did not move to a successor chain.
   */
  async shutdown(reason: 'reload' | 'shutdown', drainMs: number): Promise<void> {
    const until = performance.now() + drainMs;
    while (this.inFlight > 0 && performance.now() < until) await new Promise((r) => setTimeout(r, 10));
    this.timers.clearAll();
    try {
      await this.hooks.shutdown.promise({ reason });
    } catch (err) {
      this.log.warn('a plugin failed during shutdown', { error: err instanceof Error ? err.message : String(err) });
    }
    await this.retained.disposeUnclaimed(this.log);
  }
}

function resolveAgainst(dir: string, p: string): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const path = require('node:path') as typeof import('node:path');
  return path.isAbsolute(p) ? p : path.resolve(dir, p);
}
