/**
 * What `forward` publishes (`api.hooksOf('forward')`): the upstreams it sends private reverse zones and
 * home.arpa to — the resolver that knows the LAN's names (usually the router). `discovery` asks them for PTR
 * records when `rdns.resolvers` is not given.
 */
import type { SyncBailHook } from 'tapable';

/** An upstream as forward resolved it: an IP literal (IPv6 link-local keeps its `%zone`) and a port. */
export interface ForwardEndpoint {
  readonly host: string;
  readonly port: number;
}

export interface ForwardHooks {
  /**
   * Call it (`.call()`) for the `private:` upstreams, resolved (resolv.conf files read, this server's own
   * addresses left out), in the order written; undefined when `private` is not set (those zones are answered
   * NXDOMAIN locally). forward taps it in `setup`: a plugin listed before forward must call it later (at
   * `startup`, or at first use), not in its own `setup`.
   */
  readonly privateUpstreams: SyncBailHook<[], readonly ForwardEndpoint[] | undefined>;
  /** Call it (`.call()`) for `max_concurrent`: the distinct questions this block's forward keeps in flight at most. */
  readonly maxConcurrent: SyncBailHook<[], number>;
}

declare module '../../core/plugin' {
  interface PluginHookRegistry {
    forward: ForwardHooks;
  }
}
