import type { FullTap } from 'tapable';
import { performance } from 'node:perf_hooks';
import type { TapTiming } from './timing';

/** How every tap is called by the chain: up to two arguments, then a node-style callback. */
export type TapCallback = (err: unknown, result: unknown) => void;
export type CallbackTap = (a: unknown, b: unknown, cb: TapCallback) => void;

type AnyFn = (...args: unknown[]) => unknown;

/**
 * A tap's function in the callback form, whatever way it was tapped (`tap`, `tapAsync`, `tapPromise`), with
 * tapable's own rules: a throw or a rejection is the tap's error, a falsy rejection reason becomes an Error.
 * `arity` is the hook's number of arguments (query: 1, response: 2), so an async tap gets its callback where
 * it expects it. Only the tap's own call is guarded: an exception from `cb` is never taken for the tap's (an async
 * tap that throws after it answered rethrows it).
 */
export function callbackForm(tap: FullTap, arity: 1 | 2, answeredTwice: (plugin: string) => void = ignore): CallbackTap {
  const fn = tap.fn as AnyFn;
  if (tap.type === 'async') {
    // A throw before the tap answered is its failure (tapable does not catch it, and it would end the process);
    // a second answer from the tap is ignored and reported.
    return (a, b, cb) => {
      let answered = false;
      const once: TapCallback = (err, r) => {
        if (answered) return answeredTwice(tap.name);
        answered = true;
        cb(err, r);
      };
      try {
        if (arity === 1) fn(a, once);
        else fn(a, b, once);
      } catch (err) {
        if (answered) throw err;
        once(err || new Error(`tap ${tap.name}: threw ${String(err)}`), undefined);
      }
    };
  }
  if (tap.type === 'promise') {
    return (a, b, cb) => {
      let p: unknown;
      try {
        p = fn(a, b);
      } catch (err) {
        return cb(err, undefined);
      }
      if (!isThenable(p)) return cb(new Error(`tap ${tap.name}: a tapPromise function must return a promise (it returned ${String(p)})`), undefined);
      p.then(
        (r) => cb(null, r),
        (err: unknown) => cb(err || new Error(`tap ${tap.name}: rejected with ${String(err)}`), undefined),
      );
    };
  }
  return (a, b, cb) => {
    let r: unknown;
    try {
      r = fn(a, b);
    } catch (err) {
      return cb(err, undefined);
    }
    cb(null, r);
  };
}

/**
 * The tap, timed into its slot when an observer is bound (the metrics plugin binds one at startup; until then,
 * and without `plugin_timing`, the slot's observer is null and no clock is read).
 */
export function timed(call: CallbackTap, slot: TapTiming): CallbackTap {
  return (a, b, cb) => {
    const observe = slot.observe;
    if (observe === null) return call(a, b, cb);
    const start = performance.now();
    call(a, b, (err, r) => {
      observe((performance.now() - start) / 1000);
      cb(err, r);
    });
  };
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && typeof v === 'object' && typeof (v as { then?: unknown }).then === 'function';
}

function ignore(): void {}
