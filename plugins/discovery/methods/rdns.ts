/**
 * rdns: the client's name from a PTR query to the configured resolvers (usually the LAN router, which
 * answers for its own DHCP clients).
 *
 * - One fresh UDP socket per attempt (random source port), a random ID from the CSPRNG; a reply counts only
 *   if it comes from the resolver's address and port (the socket is connected), carries our ID, is a
 *   response and repeats our question. Anything else — a forged or stale reply — is ignored and the wait goes
 *   on.
 * - Resolvers are tried in order, moving on only when one fails (timeout, SERVFAIL, REFUSED, socket
 *   error). NXDOMAIN and NODATA are answers: they end the lookup as `negative`, since asking another resolver
 *   the same question is expected to give the same answer. When every resolver fails, the outcome is a
 *   `failure` (this is what the circuit breaker counts).
 * - Several PTR records: the shortest name wins, ties broken lexically (see pickName). The trailing dot is
 *   stripped and the full name kept (`laptop.lan`).
 * - A truncated reply that still holds the PTR is used; one that holds nothing counts as a failure of that
 *   resolver (no TCP retry: a reverse name's PTR set that does not fit in 512 bytes is not a home network's).
 */
import { normalizeIp, reverseName } from '../../pkg/address.js';
import { buildPtrQuery, matchPtrReply, pickName, randomId, RCODE_NOERROR, RCODE_NXDOMAIN, type PtrReply } from './dnsutil.js';
import { defineMethod } from './probe.js';
import { udpExchange } from '../../pkg/udpExchange.js';
import { failure, found, NEGATIVE, type DiscoveryMethod } from './types.js';

export interface RdnsResolver {
  /** An IP literal (no names: resolving the resolver would need a resolver). */
  host: string;
  port: number;
}

export interface RdnsOptions {
  /**
   * The resolvers, or a function that gives them at each lookup: the server's choice may depend on another
   * plugin (forward's `private` upstreams) that is only known once the whole chain is set up. A function that
   * gives none means rdns has nothing to ask: the lookup finds nothing (it does not fail).
   */
  resolvers: readonly RdnsResolver[] | (() => readonly RdnsResolver[]);
  /** Time to wait for each resolver before trying the next one; a function of the number of resolvers. */
  timeoutMs: number | ((resolvers: number) => number);
}

const RCODE_NAMES: Record<number, string> = { 1: 'FORMERR', 2: 'SERVFAIL', 4: 'NOTIMP', 5: 'REFUSED' };

export function createRdns(options: RdnsOptions): DiscoveryMethod {
  const given = options.resolvers;
  const fixed = typeof given === 'function' ? undefined : given.map((r) => ({ host: r.host, port: r.port }));
  const timeoutOf = options.timeoutMs;

  return defineMethod('rdns', async (ip, signal) => {
    const key = normalizeIp(ip);
    if (key === undefined) return NEGATIVE;
    const resolvers = fixed ?? (given as () => readonly RdnsResolver[])();
    if (resolvers.length === 0) return fixed === undefined ? NEGATIVE : failure('rdns: no resolver configured');
    const timeoutMs = typeof timeoutOf === 'number' ? timeoutOf : timeoutOf(resolvers.length);
    const qname = reverseName(key);
    const problems: string[] = [];
    for (const r of resolvers) {
      if (signal.aborted) return failure('rdns: aborted');
      const payload = buildPtrQuery(qname, randomId(), true);
      const result = await udpExchange<PtrReply>({
        host: r.host,
        port: r.port,
        payload,
        timeoutMs,
        signal,
        accept: (msg) => matchPtrReply(msg, payload, qname),
      });
      const where = `${r.host}:${r.port}`;
      switch (result.kind) {
        case 'aborted':
          return failure('rdns: aborted');
        case 'timeout':
          problems.push(`${where} timed out`);
          continue;
        case 'error':
          problems.push(`${where} ${result.code}`);
          continue;
        case 'reply': {
          const reply = result.value;
          if (reply.rcode === RCODE_NXDOMAIN) return NEGATIVE;
          if (reply.rcode !== RCODE_NOERROR) {
            problems.push(`${where} ${RCODE_NAMES[reply.rcode] ?? `rcode ${reply.rcode}`}`);
            continue;
          }
          const name = pickName(reply.names);
          if (name !== undefined) return found({ hostname: name, source: 'rdns' });
          if (reply.truncated) {
            problems.push(`${where} truncated reply`);
            continue;
          }
          return NEGATIVE; // NODATA
        }
      }
    }
    return failure(`rdns: ${problems.join('; ')}`);
  });
}
