/**
 * mdns: the client's `.local` name from its own mDNS responder, asked by unicast (RFC 6762 §6.7, "legacy
 * unicast responses").
 *
 * A PTR query for the reverse name goes unicast to ip:5353 from an EPHEMERAL source port — never from 5353,
 * and never to the multicast group: nothing here joins or sends to 224.0.0.251 / ff02::fb. Because the source
 * port is not 5353, a conforming responder treats us as a simple resolver and answers with a conventional
 * unicast DNS response to our address and port, repeating our ID and question; the reply must carry our ID
 * (and our question when it repeats one).
 *
 * Responders answer only on their own link: RFC 6762 §11 has them ignore queries whose source address is not
 * on a local link, so this method only learns names of clients on the server's own LAN segment — a client
 * behind a router stays silent, which is a `negative` outcome, like any device without an mDNS responder
 * (no reply before the timeout, or ICMP port-unreachable). Only a socket that cannot be used is a `failure`.
 *
 * The name: `laptop.local` becomes `laptop` (the `.local` suffix says nothing; the label is the host name);
 * a name outside `.local` is kept whole. Several PTR records: the same deterministic pick as rdns.
 */
import { reverseName } from '../../pkg/address.js';
import { buildPtrQuery, matchPtrReply, pickName, type PtrReply } from './dnsutil.js';
import { createProbe } from './probe.js';
import { found, NEGATIVE, type DiscoveryMethod } from './types.js';

export interface MdnsOptions {
  /** Destination port of the probe (5353; tests use responders on other ports). */
  port?: number;
  timeoutMs: number;
  /** Addresses that may be probed (defence in depth); default isProbeable without an on-link test. */
  allow?: (ip: string) => boolean;
}

/** `laptop.local` → `laptop`; other names unchanged. */
export function stripLocal(name: string): string {
  return /\.local$/i.test(name) && name.length > '.local'.length ? name.slice(0, -'.local'.length) : name;
}

export function createMdns(options: MdnsOptions): DiscoveryMethod {
  return createProbe<PtrReply>({
    name: 'mdns',
    port: options.port ?? 5353,
    timeoutMs: options.timeoutMs,
    allow: options.allow,
    request: (id, canonical) => {
      const qname = reverseName(canonical);
      const payload = buildPtrQuery(qname, id, false);
      return { payload, accept: (msg) => matchPtrReply(msg, payload, qname) };
    },
    onReply: (reply) => {
      const name = pickName(reply.names.map(stripLocal));
      return name === undefined ? NEGATIVE : found({ hostname: name, source: 'mdns' });
    },
  });
}
