import type { FullTap } from 'tapable';
import type { NextCallback, NextFn, QueryContext } from './context';
import type { DnsResponse } from './response';
import { type CallbackTap, type TapCallback, callbackForm, timed } from './tapForm';
import type { TapTiming } from './timing';
import { Rcode } from './wire/constants';

/** A `query` tap as the chain's register interceptor leaves it: the plugin it belongs to and its timing slot. */
export type QueryTap = FullTap & { readonly plugin: string; readonly timing: TapTiming };

/** How a walk ends: a failure (and the plugin it came from), a response, or neither (nothing answered). */
export type WalkDone = (err: unknown, res: DnsResponse | undefined, plugin: string) => void;

/** One position of the compiled chain: runs its tap and, when that passes, the positions below. */
export type Handler = (ctx: QueryContext, done: WalkDone) => void;

/**
 * The `query` taps compiled, in order, into one handler per position with `next` bound per position
 * (CoreDNS's `Next`). Entering position i points `ctx.next()` at the walk from i + 1; a walk started by
 * `next()` points it back at i when it ends, so a tap may call `next()` again (a retry) and get the same rest.
 */
export function compileQueryWalk(taps: readonly QueryTap[], answeredTwice: (plugin: string) => void): Handler {
  let below: Handler = endOfChain;
  for (let i = taps.length - 1; i >= 0; i--) below = position(taps[i], below, answeredTwice);
  return below;
}

function position(tap: QueryTap, below: Handler, answeredTwice: (plugin: string) => void): Handler {
  const call: CallbackTap = timed(callbackForm(tap, 1, answeredTwice), tap.timing);
  const plugin = tap.plugin;
  const viaCallback = (ctx: QueryContext, cb: NextCallback): void => {
    below(ctx, (err, res) => {
      ctx.below = next;
      if (err) cb(err instanceof Error ? err : new Error(String(err)));
      else cb(null, res ?? ctx.reply(Rcode.SERVFAIL));
    });
  };
  const next: NextFn = Object.assign(
    (ctx: QueryContext) =>
      new Promise<DnsResponse>((resolve, reject) => {
        viaCallback(ctx, (err, res) => (err !== null ? reject(err) : resolve(res as DnsResponse)));
      }),
    { viaCallback },
  );
  const settle = (ctx: QueryContext, done: WalkDone, err: unknown, result: unknown): void => {
    if (err) return done(err, undefined, plugin);
    if (result === undefined) return below(ctx, done);
    const res = result as DnsResponse;
    if (res.plugin === '') res.plugin = plugin;
    done(null, res, plugin);
  };
  if (tap.type === 'sync') {
    // A plain `tap` (acl, filter, ratelimit: most of a chain) is called directly while it is not timed: no
    // callback closure per query. Only its own call is guarded, as in the callback form.
    const fn = tap.fn as (ctx: QueryContext) => unknown;
    const slot = tap.timing;
    return (ctx, done) => {
      ctx.below = next;
      if (slot.observe !== null) return call(ctx, undefined, (err, result) => settle(ctx, done, err, result));
      let result: unknown;
      try {
        result = fn(ctx);
      } catch (err) {
        return done(err, undefined, plugin);
      }
      settle(ctx, done, null, result);
    };
  }
  if (tap.type === 'async') {
    // The cache's and forward's form: called directly while untimed, guarded as the callback form guards it.
    const fn = tap.fn as (ctx: QueryContext, cb: TapCallback) => void;
    const slot = tap.timing;
    return (ctx, done) => {
      ctx.below = next;
      if (slot.observe !== null) return call(ctx, undefined, (err, result) => settle(ctx, done, err, result));
      let answered = false;
      const cb: TapCallback = (err, result) => {
        if (answered) return answeredTwice(plugin);
        answered = true;
        settle(ctx, done, err, result);
      };
      try {
        fn(ctx, cb);
      } catch (err) {
        if (answered) throw err;
        cb(err || new Error(`tap ${plugin}: threw ${String(err)}`), undefined);
      }
    };
  }
  return (ctx, done) => {
    ctx.below = next;
    call(ctx, undefined, (err, result) => settle(ctx, done, err, result));
  };
}

/** Past the last tap: no answer (the chain turns that into SERVFAIL). */
const endOfChain: Handler = (_ctx, done) => done(null, undefined, '');
