/**
 * What every network method (rdns, netbios, mdns) does around its own question, written once: the lookups in
 * flight that `close()` ends, a thrown error turned into a `failure` naming the method, and — for the unicast
 * probes of a client (netbios, mdns) — the address checks, the target (with its IPv6 zone), the random ID, the
 * UDP exchange with its timeout, and the reading of silence and socket errors.
 */
import { isProbeable, parseIp, splitZone } from '../../pkg/address.js';
import { randomId } from './dnsutil.js';
import { udpExchange, type ExchangeResult } from '../../pkg/udpExchange.js';
import { Inflight } from './inflight.js';
import { failure, NEGATIVE, type DiscoveryMethod, type MethodName, type MethodOutcome } from './types.js';

/**
 * A method from its lookup: the lookup gets a signal that aborts when the caller's does or when the method is
 * closed, and whatever it throws becomes `failure('<name>: <message>')`.
 */
export function defineMethod(name: MethodName, lookup: (ip: string, signal: AbortSignal) => Promise<MethodOutcome>): DiscoveryMethod {
  const inflight = new Inflight();
  return {
    name,
    async lookup(ip: string, signal: AbortSignal): Promise<MethodOutcome> {
      const op = inflight.begin(signal);
      try {
        return await lookup(ip, op.signal);
      } catch (err) {
        return failure(`${name}: ${err instanceof Error ? err.message : String(err)}`);
      } finally {
        op.end();
      }
    },
    close(): void {
      inflight.closeAll();
    },
  };
}

export type ProbeName = 'netbios' | 'mdns';

/**
 * Socket errors of a probe (netbios, mdns) that mean "the device is not there / does not speak the protocol"
 * rather than "we cannot send": ICMP port unreachable (ECONNREFUSED) and host unreachable / down (the
 * neighbour did not answer ARP/ND). Every other error (EACCES, ENETUNREACH, EADDRNOTAVAIL, ENETDOWN, a bad
 * port…) is an outage of the method itself.
 */
export const PROBE_NEGATIVE_ERRORS: ReadonlySet<string> = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'EHOSTDOWN']);

/** The outcome of a probe's socket error (see PROBE_NEGATIVE_ERRORS). */
export function probeErrorOutcome(method: ProbeName, code: string, message: string): MethodOutcome {
  return PROBE_NEGATIVE_ERRORS.has(code) ? NEGATIVE : failure(`${method}: ${message.includes(code) ? message : `${code}: ${message}`}`);
}

/**
 * The outcome of one unicast probe of a client (netbios, mdns): a reply is read by `onReply`; silence or an
 * abort is a negative (most devices ignore these probes); a socket error is classified by probeErrorOutcome.
 */
export function probeOutcome<T>(method: ProbeName, result: ExchangeResult<T>, onReply: (value: T) => MethodOutcome): MethodOutcome {
  switch (result.kind) {
    case 'reply':
      return onReply(result.value);
    case 'timeout':
    case 'aborted':
      return NEGATIVE;
    case 'error':
      return probeErrorOutcome(method, result.code, result.message);
  }
}

export interface ProbeSpec<T> {
  readonly name: ProbeName;
  readonly port: number;
  readonly timeoutMs: number;
  /** Addresses that may be probed (defence in depth: the plugin checks first); default isProbeable without an on-link test. */
  readonly allow?: (ip: string) => boolean;
  /** The protocol speaks IPv4 only (NetBIOS): other addresses are a negative without a packet. */
  readonly ipv4Only?: boolean;
  /** The datagram to send with this ID to the client at `canonical`, and how to recognise its reply. */
  request(id: number, canonical: string): { payload: Uint8Array; accept(msg: Buffer): T | undefined };
  /** Reads the reply. */
  onReply(value: T): MethodOutcome;
}

/** A method that asks the client itself one question by unicast UDP (netbios, mdns). */
export function createProbe<T>(spec: ProbeSpec<T>): DiscoveryMethod {
  const allow = spec.allow ?? ((ip: string): boolean => isProbeable(ip));
  return defineMethod(spec.name, async (ip, signal) => {
    const addr = parseIp(ip);
    if (!addr || (spec.ipv4Only === true && addr.kind() !== 'ipv4')) return NEGATIVE;
    const canonical = addr.toString();
    if (!allow(canonical)) return NEGATIVE;
    // A link-local IPv6 target needs its zone to leave through the right interface.
    const { zone } = splitZone(ip);
    const target = addr.kind() === 'ipv6' && zone ? `${canonical}%${zone}` : canonical;
    const { payload, accept } = spec.request(randomId(), canonical);
    const result = await udpExchange<T>({ host: target, port: spec.port, payload, timeoutMs: spec.timeoutMs, signal, accept });
    return probeOutcome(spec.name, result, spec.onReply);
  });
}
