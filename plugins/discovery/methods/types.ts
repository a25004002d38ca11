/**
 * The common shape of the discovery methods (rdns, netbios, mdns, dhcp, arp).
 *
 * The `discovery` plugin calls `lookup(ip, signal)` for a new client and folds the outcomes together. The
 * three outcome kinds matter to the circuit breaker, which counts only `failure`:
 *
 * - `found`    — the method learned a hostname and/or a MAC address.
 * - `negative` — the method worked, but has nothing about this client: NXDOMAIN / NODATA, no such lease, no
 *                neighbour entry, or a device that stays silent to a NetBIOS / mDNS probe (most devices do:
 *                that is the normal case, not an outage).
 * - `failure`  — the method's own infrastructure is out: the resolver timed out or answered SERVFAIL, a socket
 *                could not be used (EACCES, ENETUNREACH…), a lease file or /proc/net/arp could not be read.
 *
 * `lookup` never throws and never rejects: every problem is one of the outcomes above.
 */
export type MethodName = 'rdns' | 'netbios' | 'mdns' | 'dhcp' | 'arp';

export interface MethodResult {
  /** Host name as the method found it (see each method for its normalisation). */
  hostname?: string;
  /** Lower-case `aa:bb:cc:dd:ee:ff`. */
  mac?: string;
  source: MethodName;
}

export type MethodOutcome =
  | { kind: 'found'; result: MethodResult }
  | { kind: 'negative' }
  | { kind: 'failure'; error: string };

export interface DiscoveryMethod {
  readonly name: MethodName;
  /**
   * Look the client up. Resolves (never rejects) with an outcome. When `signal` aborts, the method stops
   * waiting at once and resolves with what a timeout of that method means (failure for rdns, negative for
   * the probes, the map's answer for the file-based ones).
   */
  lookup(ip: string, signal: AbortSignal): Promise<MethodOutcome>;
  /** Releases sockets, watchers and timers. Idempotent. */
  close?(): void;
}

export const NEGATIVE: MethodOutcome = Object.freeze({ kind: 'negative' }) as MethodOutcome;

export function found(result: MethodResult): MethodOutcome {
  return { kind: 'found', result };
}

export function failure(error: string): MethodOutcome {
  return { kind: 'failure', error };
}

/** The message of an unknown thrown value, with its errno code when it has one. */
export function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
