import type { FullTap } from 'tapable';
import { performance } from 'node:perf_hooks';
import type { QueryContext } from './context';
import { createServerHooks, type ServerHooks } from './hooks';
import type { Logger } from './log';
import type { MetricsHub } from './metricsRegistry';
import type { AnyPluginDefinition, BlockInfo, PluginApi, ServerIntrospection, StorageAccess, WireStats } from './plugin';
import { compileQueryWalk, type Handler, type QueryTap } from './queryWalk';
import type { DnsResponse } from './response';
import { callbackForm, timed } from './tapForm';
import type { TapTiming } from './timing';
import { Rcode } from './wire/constants';
import { RetainedState, SharedState } from './retained';
import { TimerSet } from './timers';
import { RepeatingWarning } from './primitives/rateLimitedLog';
import { setupOrder } from './setupOrder';

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
  /** What plugins share across the server's chains (`api.shared`); absent: this chain's own. */
  readonly shared?: SharedState;
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

/** More than any block's plugin count: a tap's own stage times this, plus its list position, orders it. */
const STAGE_SPAN = 1 << 16;

/**
 * The plugin chain of one server block: its hooks, its plugins' setup (two phases), and the walk.
 * A reload builds a new Chain beside the old one and swaps it in; retained state moves across.
 */
export class Chain {
  readonly hooks: ServerHooks = createServerHooks();
  readonly block: BlockInfo;
  readonly entries: readonly ChainEntry[];
  readonly timings: TapTiming[] = [];
  /** Queries currently being handled by this chain; a replaced chain is shut down once this reaches 0. */
  inFlight = 0;
  private readonly published = new Map<string, object>();
  /** The `query` taps compiled (see queryWalk.ts); null until setup ends, and again after a late tap. */
  private walk: Handler | null = null;
  /** Untapped, the response hook is not called at all (tapable would still run its compiled function). */
  private respond = false;
  private readonly timers = new TimerSet();
  readonly retained: RetainedState;
  private readonly shared: SharedState;
  private registering: { name: string; index: number } | null = null;
  private readonly log: Logger;
  /** A failing plugin can fail every query: say so once per interval, with the count, not once per query. */
  private readonly queryFailures: RepeatingWarning;
  private readonly responseFailures: RepeatingWarning;
  /** A tap that called its callback again: the later answers are dropped, counted in this warning. */
  private readonly secondAnswers: RepeatingWarning;
  private lastSecondAnswer = '';
  private readonly answeredTwice = (plugin: string): void => {
    this.lastSecondAnswer = plugin;
    this.secondAnswers.hit();
  };
  private lastFailure = '';

  constructor(block: BlockInfo, entries: readonly ChainEntry[], private readonly services: ChainServices, previous?: RetainedState) {
    this.block = block;
    this.entries = entries;
    this.log = services.log;
    this.queryFailures = new RepeatingWarning({ intervalMs: 10_000, emit: (count) => this.log.warn('queries failed in the chain (answered SERVFAIL)', { count, last: this.lastFailure }) });
    this.responseFailures = new RepeatingWarning({ intervalMs: 10_000, emit: (count) => this.log.warn('response hook failed (the unmodified response was sent)', { count, last: this.lastFailure }) });
    this.secondAnswers = new RepeatingWarning({ intervalMs: 10_000, emit: (count) => this.log.warn('a plugin answered a query twice (the later answers were dropped)', { count, plugin: this.lastSecondAnswer }) });
    this.retained = new RetainedState(previous);
    this.shared = services.shared ?? new SharedState();
    this.hooks.query.intercept({ register: (tap) => this.registerQueryTap(tap) });
    this.hooks.response.intercept({ register: (tap) => this.registerResponseTap(tap) });
    // Setup does not run in list order (dependencies first), so taps of the other server hooks are put in list order explicitly.
    this.hooks.served.intercept({ register: (tap) => this.inListOrder(tap) });
    for (const hook of [this.hooks.startup, this.hooks.shutdown, this.hooks.reload]) hook.intercept({ register: (tap) => this.inListOrder(tap) });
  }

  /** Runs both setup phases; on failure nothing of this chain stays alive. */
  async setup(): Promise<void> {
    const order = setupOrder(this.entries.map((e) => ({ name: e.name, requires: e.definition.requires, uses: e.definition.uses })));
    if (!order.ok) {
      // The loader reports cycles first; this keeps a chain built some other way from setting up half its plugins.
      const first = this.entries.findIndex((e) => e.name === order.cycle[0]);
      throw new PluginSetupError(order.cycle[0], first, new Error(`plugins that wait for each other to be set up: ${order.cycle.join(' → ')}`));
    }
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
    // Dependencies first (setupOrder); `index`, the chain position, stays the list's.
    for (const i of order.order) {
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
    this.compile();
  }

  /** Drops a chain that was built but never swapped in: its own state goes, state it took over goes back. */
  async discard(): Promise<void> {
    await this.abandon();
  }

  private async abandon(): Promise<void> {
    this.timers.clearAll();
    await this.retained.disposeFresh(this.log);
    await this.shared.release(this, this.log);
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
      shared: (key, create, dispose) => this.shared.acquire(`${e.name}/${key}`, this, create, dispose),
    };
  }

  private currentRegistration(tap: FullTap): { name: string; index: number } {
    if (this.registering) return this.registering;
    const idx = this.entries.findIndex((e) => e.name === tap.name);
    return { name: tap.name, index: idx === -1 ? this.entries.length : idx };
  }

  /** A slot for the tap's time in this chain's list, which the metrics plugin binds to its histogram. */
  private timingSlot(plugin: string, hook: string): TapTiming {
    const timing: TapTiming = { plugin, hook, observe: null };
    this.timings.push(timing);
    return timing;
  }

  /**
   * A `query` tap keeps its function; it is tagged with its plugin and timing slot and staged at the plugin's
   * position, so tapable's own ordering is the chain order the walk is compiled in.
   */
  private registerQueryTap(tap: FullTap): FullTap {
    const { name, index } = this.currentRegistration(tap);
    const tagged: QueryTap = Object.assign({}, tap, { stage: index, plugin: name, timing: this.timingSlot(name, 'query') });
    this.walk = null;
    return tagged;
  }

  /** A `response` tap stays in tapable's waterfall, called in the callback form and timed like a query tap. */
  private registerResponseTap(tap: FullTap): FullTap {
    const { name, index } = this.currentRegistration(tap);
    const fn = timed(callbackForm(tap, 2, this.answeredTwice), this.timingSlot(name, 'response'));
    this.respond = true;
    return Object.assign({}, tap, { type: 'async' as const, fn, stage: index });
  }

  /** A tap's explicit `stage` first, then its plugin's list position (tapable keeps equal stages in tap order). */
  private inListOrder(tap: FullTap): FullTap {
    const { index } = this.currentRegistration(tap);
    return Object.assign({}, tap, { stage: (tap.stage ?? 0) * STAGE_SPAN + index });
  }

  private compile(): Handler {
    const walk = compileQueryWalk(this.hooks.query.taps as QueryTap[], this.answeredTwice);
    this.walk = walk;
    return walk;
  }

  /** Walks the chain for one query and calls `done` with the response to write (never fails). */
  handle(ctx: QueryContext, done: (res: DnsResponse) => void): void {
    this.inFlight++;
    // A tap registered after setup (from a startup hook) recompiles the walk once, here.
    const walk = this.walk ?? this.compile();
    walk(ctx, (err, res, plugin) => {
      let answer = res;
      if (err) {
        this.lastFailure = `${plugin === '' ? 'chain' : plugin}: ${err instanceof Error ? err.message : String(err)}`;
        this.queryFailures.hit();
        answer = ctx.reply(Rcode.SERVFAIL);
      } else if (answer === undefined) {
        answer = ctx.reply(Rcode.SERVFAIL);
      }
      if (!this.respond) {
        this.inFlight--;
        done(answer);
        return;
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
    await this.shared.release(this, this.log);
  }
}

function resolveAgainst(dir: string, p: string): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const path = require('node:path') as typeof import('node:path');
  return path.isAbsolute(p) ? p : path.resolve(dir, p);
}
