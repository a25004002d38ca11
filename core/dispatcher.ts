import { performance } from 'node:perf_hooks';
import type { Chain } from './chain';
import { QueryContext, type ClientInfo } from './context';
import type { MessageSink, PeerInfo, Reply, TcpCloseReason } from './listeners';
import type { Logger } from './log';
import type { WireStats } from './plugin';
import { RepeatingWarning } from './primitives/rateLimitedLog';
import { Flag, Rcode } from './wire/constants';
import { errorReply, writeForClient } from './wire/finalize';
import { wireKeyInZone, zoneWireKey } from './wire/names';
import { parseQuery, type ParsedQuery } from './wire/query';
import { u16 } from './wire/bytes';

/** A server block's chain as reachable from one listen address. */
export interface Route {
  readonly zone: string;
  readonly chain: Chain;
  readonly server: string;
  readonly ednsSize: number;
}

/** Counters of the wire layer, exposed to the metrics plugin. */
export class WireCounters implements WireStats {
  udpReceived = 0;
  tcpReceived = 0;
  readonly dropped: Record<string, number> = { short: 0, response: 0, shutdown: 0, source_port_0: 0 };
  formerr = 0;
  notimp = 0;
  badvers = 0;
  refusedZone = 0;
  refusedMeta = 0;
  readonly sendErrors: Record<'udp' | 'tcp', number> = { udp: 0, tcp: 0 };
  tcpConnections = 0;
  tcpConnectionsRefused = 0;
  readonly tcpClosed: Record<TcpCloseReason, number> = { evicted: 0, per_client: 0, read_timeout: 0, idle_timeout: 0, drain_timeout: 0, half_closed: 0 };
  tcpPaused = 0;
  tcpPauses = 0;
  tcpInflightFull = 0;
  inFlight = 0;
}

/**
 * Turns received bytes into chain walks: checks the packet, answers what the core answers itself (FORMERR,
 * NOTIMP, BADVERS, REFUSED for an unserved zone), picks the block with the longest matching zone and writes
 * the chain's response in wire format for this client.
 */
export class Dispatcher {
  readonly counters = new WireCounters();
  /** Routes by listen key, longest zone first; replaced as a whole on reload. */
  private routes = new Map<string, readonly Route[]>();
  private accepting = true;
  private readonly chainFailure: RepeatingWarning;
  private readonly servedFailure: RepeatingWarning;

  /** Where its warnings go: the server points it at the configured logger (`log:` block) once that is read. */
  log: Logger;

  constructor(log: Logger) {
    this.log = log;
    this.chainFailure = new RepeatingWarning({ intervalMs: 10_000, emit: (count) => this.log.error('failed to write a response', { count }) });
    this.servedFailure = new RepeatingWarning({ intervalMs: 10_000, emit: (count) => this.log.error('a served-hook observer threw', { count }) });
  }

  setRoutes(routes: Map<string, Route[]>): void {
    for (const list of routes.values()) {
      list.sort((a, b) => b.zone.length - a.zone.length);
      for (const r of list) if (!zoneKeys.has(r.zone)) zoneKeys.set(r.zone, keyOfZone(r.zone));
    }
    this.routes = routes;
  }

  stopAccepting(): void {
    this.accepting = false;
  }

  /** The sink a listener bound to `listenKey` feeds. */
  sinkFor(listenKey: string): MessageSink {
    const c = this.counters;
    return {
      onMessage: (raw, peer, transport, reply, done) => this.dispatch(listenKey, raw, peer, transport, reply, done),
      onTcpConnection: (open) => {
        c.tcpConnections += open ? 1 : -1;
      },
      onTcpRefused: () => {
        c.tcpConnectionsRefused++;
      },
      onTcpClosed: (reason) => {
        c.tcpClosed[reason]++;
      },
      onTcpPaused: (paused) => {
        c.tcpPaused += paused ? 1 : -1;
        if (paused) c.tcpPauses++;
      },
      onTcpInflightFull: () => {
        c.tcpInflightFull++;
      },
      onDropped: (reason) => {
        c.dropped[reason] = (c.dropped[reason] ?? 0) + 1;
      },
      onSendError: (transport) => {
        c.sendErrors[transport]++;
      },
    };
  }

  private dispatch(listenKey: string, raw: Buffer, peer: PeerInfo, transport: 'udp' | 'tcp', reply: Reply, done: () => void): void {
    const c = this.counters;
    if (transport === 'udp') c.udpReceived++;
    else c.tcpReceived++;
    if (!this.accepting) {
      c.dropped.shutdown++;
      return done();
    }
    const q = parseQuery(raw, transport === 'tcp');
    if (q.kind === 'drop') {
      c.dropped[q.reason]++;
      return done();
    }
    if (q.kind === 'formerr') {
      c.formerr++;
      reply(errorReply(raw, q.id, q.flags, q.questionEnd, Rcode.FORMERR, 0, false));
      return done();
    }
    const routes = this.routes.get(listenKey);
    const ourSize = routes?.[0]?.ednsSize ?? 1232;
    if (q.kind === 'notimp') {
      c.notimp++;
      const out = errorReply(raw, q.id, q.flags, q.questionEnd, Rcode.NOTIMP, 0, false);
      // RD, RA, AD and CD are defined for QUERY only (RFC 1035 §4.1.1, RFC 6895 §2): an unknown opcode gets
      // them all clear, its opcode echoed.
      if ((q.flags & OPCODE_MASK) !== 0) out.writeUInt16BE(Flag.QR | (q.flags & OPCODE_MASK) | Rcode.NOTIMP, 2);
      reply(out);
      return done();
    }
    if (q.kind === 'refused') {
      c.refusedMeta++;
      reply(errorReply(raw, q.id, q.flags, q.questionEnd, Rcode.REFUSED, 0, false));
      return done();
    }
    if (q.edns !== null && q.edns.version > 0) {
      c.badvers++;
      reply(errorReply(raw, q.id, q.flags, q.questionEnd, Rcode.BADVERS, ourSize, q.edns.dnssecOk));
      return done();
    }
    const route = routes === undefined ? undefined : pickRoute(routes, q);
    if (route === undefined) {
      c.refusedZone++;
      reply(errorReply(raw, q.id, q.flags, q.questionEnd, Rcode.REFUSED, q.edns !== null ? ourSize : 0, q.edns?.dnssecOk ?? false));
      return done();
    }
    const client: ClientInfo = {
      address: peer.address,
      port: peer.port,
      family: peer.family,
      transport,
      localAddress: peer.localAddress,
      ednsSize: q.edns === null ? 0 : q.edns.udpSize,
      dnssecOk: q.edns !== null && q.edns.dnssecOk,
      checkingDisabled: (q.flags & Flag.CD) !== 0,
    };
    const chain = route.chain;
    const ctx = new QueryContext(raw, q, client, route.zone, route.server, performance.now());
    c.inFlight++;
    chain.handle(ctx, (res) => {
      c.inFlight--;
      if (!res.dropped) {
        let out: Buffer;
        try {
          out = writeForClient(res, q, raw, { tcp: transport === 'tcp', ourUdpSize: route.ednsSize });
        } catch {
          this.chainFailure.hit();
          out = errorReply(raw, q.id, q.flags, q.questionEnd, Rcode.SERVFAIL, q.edns !== null ? route.ednsSize : 0, false);
        }
        ctx.replySize = out.length;
        ctx.replyFlags = u16(out, 2);
        reply(out);
      }
      done();
      const served = chain.hooks.served;
      if (served.taps.length === 0) return;
      try {
        served.call(ctx, res);
      } catch {
        this.servedFailure.hit();
      }
    });
  }
}

const OPCODE_MASK = 0x7800;

/** Zones as wire keys, made once per zone text: routing compares labels, never dotted strings. */
const zoneKeys = new Map<string, string>();

/** A zone that cannot be a name (a label over 63 bytes) gets a key no query name ends with (and not the root's length). */
function keyOfZone(zone: string): string {
  try {
    return zoneWireKey(zone);
  } catch {
    return '\uffff\uffff';
  }
}

function pickRoute(routes: readonly Route[], q: ParsedQuery): Route | undefined {
  if (routes.length === 1 && routes[0].zone === '') return routes[0];
  for (const r of routes) {
    let key = zoneKeys.get(r.zone);
    if (key === undefined) zoneKeys.set(r.zone, (key = keyOfZone(r.zone)));
    if (wireKeyInZone(q.wireKey, key)) return r;
  }
  return undefined;
}
