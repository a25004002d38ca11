/**
 * The forwarding engine of one `forward` instance: identical questions in flight merged into one upstream
 * exchange, failover in policy order within a deadline, health accounting, `max_concurrent` and `client_share`.
 *
 * Per query the hot path allocates one Flight (shared by every identical query, found in a fixed table by the
 * client's question bytes: no key string) with the list of its waiters' addresses and the upstream query bytes; the try's timer is the Flight's own place in the
 * forwarder's deadline queue, and the UDP try takes a slot in the upstream's socket pool (a fixed-size table, no
 * socket per query). Listeners are shared functions that find their state on the socket — no closures per query.
 */
import { performance } from 'node:perf_hooks';
import type { QueryContext } from '../../core/context';
import { DeadlineQueue, type DeadlineEntry } from '../pkg/deadlines';
import type { Logger } from '../../core/log';
import { RepeatingWarning } from '../../core/primitives/rateLimitedLog';
import { DnsResponse } from '../../core/response';
import { Flag, Rcode } from '../../core/wire/constants';
import { layoutOf, type MessageLayout } from '../../core/wire/message';
import type { UdpTryOwner } from '../pkg/udpPool';
import { buildQuery, edeOf, isTruncated, mismatch, questionEndOf, type RejectReason } from './exchange';
import { FlightTable, questionHash } from './flightTable';
import type { ForwardMetrics, RejectReasonLabel } from './metrics';
import type { Policy } from './policy';
import type { HealthOptions, TcpConnection, TcpOwner, Upstream } from './upstream';

/** RFC 8914 code 22. */
export const EDE_NO_REACHABLE_AUTHORITY = 22;
/** RFC 8914 code 23. */
export const EDE_NETWORK_ERROR = 23;
/** RFC 8914 code 20: the REFUSED answer to RD=0 when nothing above could answer it locally. */
export const EDE_NOT_AUTHORITATIVE = 20;

export type ForwardFailure = 'all_down' | 'timeout' | 'shutdown';

/**
 * What the client sees when forward fails as a whole: SERVFAIL with Extended DNS Error 22 and why.
 * forward answers its failures rather than rejecting: a cache above sees a SERVFAIL through `ctx.next()`,
 * which it treats as a failure (serve-stale, never replacing a good entry), and the chain does not log a
 * warning per failed query while an upstream is down (the state change is logged once, by the upstream).
 */
export const FAILURE_EDE: Readonly<Record<ForwardFailure, { readonly code: number; readonly text: string }>> = {
  all_down: { code: EDE_NO_REACHABLE_AUTHORITY, text: 'every upstream is down' },
  timeout: { code: EDE_NO_REACHABLE_AUTHORITY, text: 'no upstream answered in time' },
  shutdown: { code: EDE_NO_REACHABLE_AUTHORITY, text: 'shutting down' },
};

/** Given to a UDP client with the upstream's TC=1 answer when TCP to that upstream failed: it retries itself. */
export const TCP_FAILED_EDE = Object.freeze({ code: EDE_NETWORK_ERROR, text: 'the upstream truncated its UDP answer and could not be reached over TCP' });
const RD0_EDE = Object.freeze({ code: EDE_NOT_AUTHORITATIVE, text: 'recursion not desired and the answer is not cached' });

/** After TCP to an upstream failed, its truncated answers go to UDP clients at once for this long. */
export const TCP_RETRY_MS = 30_000;

export interface ForwarderOptions extends HealthOptions {
  readonly deadlineMs: number;
  readonly maxConcurrent: number;
  /** Percent of `maxConcurrent` one client address may hold (its own questions and merged copies). */
  readonly clientShare: number;
  readonly healthCheckMs: number;
}

/** A set of upstreams with the policy that orders them (`to`, and `private`). */
export class UpstreamGroup {
  /** Monotonic time of the last recovery trial sent while every upstream was down. */
  lastTrial = -Infinity;
  constructor(readonly upstreams: readonly Upstream[], readonly policy: Policy) {}

  allDown(): boolean {
    for (const u of this.upstreams) if (!u.down) return false;
    return true;
  }

  /** When the last of them went down: the first recovery trial waits a health_check interval from then. */
  lastDownAt(): number {
    let t = -Infinity;
    for (const u of this.upstreams) if (u.downAt > t) t = u.downAt;
    return t;
  }

  close(): void {
    for (const u of this.upstreams) u.close();
  }
}

export type Callback = (err: Error | null, res?: DnsResponse) => void;

export class Forwarder {
  /** Distinct questions in flight to upstreams (bounded by max_concurrent). */
  inFlight = 0;
  /** Client queries waiting on a question already in flight (bounded by max_concurrent too). */
  merging = 0;
  readonly flights: FlightTable<Flight>;
  /** Every flight's try timer, on one Node timer. */
  readonly tryTimers = new DeadlineQueue();
  /** Queries each client address has waiting here (its own questions and merged copies); absent when 0. */
  private readonly perClient = new Map<string, number>();
  /** The most one client address may have waiting once the forwarder is contended. */
  readonly clientLimit: number;
  /**
   * Queries waiting here (questions and merged copies) from which the per-client limit applies: below it a
   * client may use what nobody else needs, so a household behind one relaying router is never refused by a
   * share while the forwarder is half idle.
   */
  readonly contended: number;
  private readonly refusedWarning: RepeatingWarning;
  private readonly localWarning: RepeatingWarning;
  private lastRefusal = '';
  private lastLocalError = '';
  private closed = false;

  constructor(readonly block: string, readonly opts: ForwarderOptions, readonly metrics: ForwardMetrics, readonly log: Logger) {
    this.flights = new FlightTable<Flight>(opts.maxConcurrent);
    this.clientLimit = Math.max(1, Math.ceil((opts.maxConcurrent * opts.clientShare) / 100));
    this.contended = Math.ceil(opts.maxConcurrent / 2);
    this.refusedWarning = new RepeatingWarning({
      intervalMs: 10_000,
      emit: (count) => log.warn('forward is full: queries refused', { reason: this.lastRefusal, max_concurrent: opts.maxConcurrent, client_share: opts.clientShare, refused: count }),
    });
    this.localWarning = new RepeatingWarning({
      intervalMs: 10_000,
      emit: (count) => log.warn('cannot open a socket to an upstream (raise the open-files limit or lower max_concurrent)', { error: this.lastLocalError, count }),
    });
  }

  /** Answers `ctx` from `group` through `cb`: the upstream's answer, REFUSED beyond the bounds, or SERVFAIL + EDE 22. */
  forward(ctx: QueryContext, group: UpstreamGroup, cb: Callback): void {
    if (this.closed) {
      cb(null, ctx.reply(Rcode.SERVFAIL, FAILURE_EDE.shutdown));
      return;
    }
    const q = ctx.query;
    if ((q.flags & Flag.RD) === 0) {
      // RD=0 asks for what this server already holds (a cache above answered it if it could); never recurse for it.
      this.metrics.notRecursed.inc();
      cb(null, ctx.reply(Rcode.REFUSED, RD0_EDE));
      return;
    }
    const client = ctx.client;
    const addr = client.address;
    const held = this.perClient.get(addr) ?? 0;
    if (held >= this.clientLimit && this.inFlight + this.merging >= this.contended) return this.refuse(ctx, cb, 'client_share');
    const bits = (client.dnssecOk ? 1 : 0) | (client.checkingDisabled ? 2 : 0) | ((q.flags & Flag.AD) !== 0 ? 4 : 0);
    const hash = questionHash(q.raw, q.questionEnd, bits);
    const existing = this.flights.find(hash, q.raw, q.questionEnd, bits);
    if (existing !== undefined) {
      if (this.merging >= this.opts.maxConcurrent) return this.refuse(ctx, cb, 'merged');
      existing.join(cb, addr, client.transport === 'tcp');
      this.merging++;
      this.perClient.set(addr, held + 1);
      this.metrics.merged.inc();
      return;
    }
    if (this.inFlight >= this.opts.maxConcurrent) return this.refuse(ctx, cb, 'max_concurrent');
    let trial = false;
    if (group.allDown()) {
      // Every upstream is down: SERVFAIL at once instead of waiting for the deadline; but let one query through
      // per health_check interval to a random upstream (as CoreDNS does), so recovery is seen even if probes fail.
      this.metrics.healthcheckBroken.inc();
      const now = performance.now();
      if (now - Math.max(group.lastTrial, group.lastDownAt()) < this.opts.healthCheckMs) {
        const res = ctx.reply(Rcode.SERVFAIL, FAILURE_EDE.all_down);
        res.localFailure = true;
        cb(null, res);
        return;
      }
      group.lastTrial = now;
      trial = true;
    }
    const query = buildQuery(q.wireKey, q.qtype, q.qclass, client.checkingDisabled, client.dnssecOk, this.opts.ednsSize, (q.flags & Flag.AD) !== 0);
    const flight = new Flight(this, hash, bits, query, group, ctx, cb, trial);
    this.flights.add(flight);
    this.inFlight++;
    this.perClient.set(addr, held + 1);
    flight.start();
  }

  private refuse(ctx: QueryContext, cb: Callback, reason: RejectReasonLabel): void {
    this.metrics.rejected(reason);
    this.lastRefusal = reason;
    this.refusedWarning.hit();
    cb(null, ctx.reply(Rcode.REFUSED));
  }

  /** Probes the upstreams of `groups` that are down or whose last probe failed (called every health_check). */
  healthTick(groups: readonly UpstreamGroup[]): void {
    if (this.opts.maxFails === 0) return;
    for (const g of groups) for (const u of g.upstreams) if (u.suspect) u.probe(this.opts);
  }

  /** Fails whatever is still in flight (after the chain drained) and accepts nothing more. */
  close(): void {
    this.closed = true;
    for (const f of this.flights.values()) f.abort();
    this.flights.clear();
  }

  localError(code: string): void {
    this.lastLocalError = code;
    this.localWarning.hit();
  }

  /** Gives back what `flight` and its waiters held. */
  settle(flight: Flight): void {
    this.flights.remove(flight);
    this.inFlight--;
    this.merging -= flight.waiters - 1;
    const clients = flight.clients;
    for (let i = 0; i < clients.length; i++) {
      const n = (this.perClient.get(clients[i]) ?? 1) - 1;
      if (n <= 0) this.perClient.delete(clients[i]);
      else this.perClient.set(clients[i], n);
    }
  }

  /** Client addresses with queries waiting (for tests and the gauge). */
  get clientsWaiting(): number {
    return this.perClient.size;
  }
}

/** Socket errors that say this machine ran short, not that the upstream failed. */
const LOCAL_ERRORS = new Set(['EMFILE', 'ENFILE', 'ENOBUFS', 'ENOMEM', 'EADDRINUSE', 'EADDRNOTAVAIL', 'EPOOLFULL']);

/** The upstream's UDP pool had no room for another try (its in-flight table full): our shortage, counted by the pool. */
const POOL_FULL: Error = Object.assign(new Error('the UDP socket pool is full'), { code: 'EPOOLFULL' });

type Ede = { readonly code: number; readonly text?: string };

/**
 * One upstream exchange on behalf of every identical client query in flight. Tries upstreams in policy order,
 * UDP first (TCP when truncated or `force_tcp`), until an answer other than SERVFAIL, the deadline, or no
 * upstream left to try.
 */
export class Flight implements UdpTryOwner<RejectReason>, TcpOwner, DeadlineEntry {
  readonly qEnd: number;
  /** The query as sent; replaced by its copy without OPT after a FORMERR to our EDNS query (RFC 6891 §7). */
  query: Buffer;
  waiters = 1;
  /** Each waiter's client address, the first one's first (released when the flight settles). */
  readonly clients: string[];
  private readonly first: Callback;
  private readonly firstTcp: boolean;
  private more: Callback[] | null = null;
  private moreTcp: boolean[] | null = null;
  private readonly order: readonly number[];
  private pos = 0;
  private triedThisPass = 0;
  /**
   * Upstreams not worth another pass: those that answered SERVFAIL (asking again gives the same) and those that
   * failed at once with a network error (port unreachable: retrying would spin until the deadline). Only
   * timeouts are retried in a later pass, a lost datagram being the one failure a retry can cure.
   */
  private skipMask = 0;
  private current: Upstream | null = null;
  private currentIndex = 0;
  /** The current UDP try's key in the upstream's pool (-1: none). */
  private udpKey = -1;
  private tcpConn: TcpConnection | null = null;
  private tcpId = 0;
  /** The current try is the TCP retry of a truncated UDP answer (its failure says nothing of UDP health). */
  private afterTc = false;
  private staleRetried = false;
  private noEdnsRetried = false;
  // The current try's timer, as an entry of the forwarder's DeadlineQueue.
  dueAt = 0;
  dlPrev: DeadlineEntry | null = null;
  dlNext: DeadlineEntry | null = null;
  dlQueued = false;
  private sentAt = 0;
  private readonly deadlineAt: number;
  private servfail: Buffer | null = null;
  private servfailLayout: MessageLayout | null = null;
  private servfailFrom: string | undefined = undefined;
  /** A TC=1 answer whose TCP retry failed: what UDP clients get when nothing better comes. */
  private truncated: Buffer | null = null;
  private truncatedLayout: MessageLayout | null = null;
  private done = false;

  constructor(
    private readonly fwd: Forwarder,
    /** The question's key in the forwarder's FlightTable. */
    readonly hash: number,
    readonly bits: number,
    query: Buffer,
    private readonly group: UpstreamGroup,
    /** The first client's context: failure replies are built from it. */
    private readonly ctx: QueryContext,
    cb: Callback,
    private readonly trial: boolean,
  ) {
    this.query = query;
    this.qEnd = questionEndOf(query);
    this.first = cb;
    this.firstTcp = ctx.client.transport === 'tcp';
    this.clients = [ctx.client.address];
    this.deadlineAt = performance.now() + fwd.opts.deadlineMs;
    const n = group.upstreams.length;
    // A recovery trial (every upstream down) is a single try to a random upstream.
    this.order = trial ? [Math.floor(Math.random() * n)] : group.policy.order(n);
  }

  join(cb: Callback, client: string, tcp: boolean): void {
    if (this.more === null) {
      this.more = [cb];
      this.moreTcp = [tcp];
    } else {
      this.more.push(cb);
      (this.moreTcp as boolean[]).push(tcp);
    }
    this.clients.push(client);
    this.waiters++;
  }

  start(): void {
    this.tryNext();
  }

  private tryNext(): void {
    const ups = this.group.upstreams;
    const order = this.order;
    for (;;) {
      if (this.done) return;
      if (performance.now() >= this.deadlineAt) return this.fail('timeout');
      if (this.pos >= order.length) {
        // End of a pass: another pass only if this one tried something (timeouts may clear; SERVFAILs won't).
        if (this.triedThisPass === 0 || this.trial) return this.fail(this.group.allDown() ? 'all_down' : 'timeout');
        this.pos = 0;
        this.triedThisPass = 0;
      }
      const i = order[this.pos++];
      const up = ups[i];
      if ((this.skipMask & (1 << i)) !== 0) continue;
      if (up.down && !this.trial) continue;
      this.triedThisPass++;
      this.currentIndex = i;
      this.send(up);
      return;
    }
  }

  private send(up: Upstream): void {
    this.current = up;
    this.staleRetried = false;
    this.afterTc = false;
    // One clock read for the try's timer and its send time.
    const now = performance.now();
    this.armTimer(now);
    if (this.fwd.opts.forceTcp) {
      this.sendTcp(false);
      return;
    }
    up.m.requests.inc();
    this.sentAt = now;
    this.udpKey = up.udp.send(this);
    if (this.udpKey === -1) this.onUdpError(POOL_FULL);
  }

  private armTimer(now = performance.now()): void {
    const left = this.deadlineAt - now;
    const ms = Math.max(1, Math.min(this.fwd.opts.timeoutMs, left));
    this.fwd.tryTimers.add(this, ms, now);
  }

  private sendTcp(fresh: boolean): void {
    const up = this.current as Upstream;
    up.m.requests.inc();
    this.sentAt = performance.now();
    const { conn, id } = up.tcp.send(this, fresh);
    this.tcpConn = conn;
    this.tcpId = id;
  }

  /** Stops the current try: its timer, its socket, its place on a TCP connection. */
  private endTry(): void {
    if (this.dlQueued) this.fwd.tryTimers.remove(this);
    if (this.udpKey !== -1) {
      (this.current as Upstream).udp.cancel(this.udpKey, this);
      this.udpKey = -1;
    }
    if (this.tcpConn !== null) {
      this.tcpConn.cancel(this.tcpId, this);
      this.tcpConn = null;
    }
  }

  // ------------------------------------------------------------------------------------------- outcomes

  onUdpReply(reply: Buffer): void {
    const up = this.current as Upstream;
    this.endTry();
    if (isTruncated(reply)) {
      // The upstream is alive whatever its TCP does.
      up.answered();
      const layout = layoutOf(reply);
      if (layout !== null) {
        this.truncated = reply;
        this.truncatedLayout = layout;
      }
      if (performance.now() - up.tcpFailedAt < TCP_RETRY_MS) {
        // Its TCP failed a moment ago: do not make every client wait a timeout for it again.
        this.fwd.metrics.tcpSkipped.inc();
        this.skipMask |= 1 << this.currentIndex;
        this.tryNext();
        return;
      }
      // The same upstream, over TCP, with a fresh try timer.
      up.m.truncated.inc();
      this.afterTc = true;
      this.armTimer();
      this.sendTcp(false);
      return;
    }
    this.accept(up, reply);
  }

  onTcpReply(reply: Buffer): void {
    this.tcpConn = null;
    this.endTry();
    const up = this.current as Upstream;
    if (this.afterTc) up.tcpFailedAt = -Infinity;
    this.accept(up, reply);
  }

  private accept(up: Upstream, reply: Buffer): void {
    const layout = layoutOf(reply);
    up.answered();
    if (layout === null) {
      // ID and question matched but the records do not parse: not an answer we can pass on; try the next.
      this.fwd.metrics.ignored('malformed');
      this.tryNext();
      return;
    }
    const rcode = (layout.optStart !== -1 ? (layout.optTtl >>> 24) << 4 : 0) | (reply[3] & 0x0f);
    up.m.observe(rcode, (performance.now() - this.sentAt) / 1000);
    if (rcode === Rcode.FORMERR && layout.optStart === -1 && this.query.length > this.qEnd && !this.noEdnsRetried) {
      // RFC 6891 §7: a server that does not know EDNS may answer FORMERR without OPT; ask it once more without.
      this.noEdnsRetried = true;
      this.fwd.metrics.noEdnsRetries.inc();
      const plain = Buffer.from(this.query.subarray(0, this.qEnd));
      plain.writeUInt16BE(0, 10);
      this.query = plain;
      this.send(up);
      return;
    }
    if (rcode === Rcode.SERVFAIL) {
      this.servfail = reply;
      this.servfailLayout = layout;
      this.servfailFrom = up.label;
      this.skipMask |= 1 << this.currentIndex;
      this.tryNext();
      return;
    }
    this.succeed(reply, layout, up.label);
  }

  onUdpError(err: Error): void {
    this.endTry();
    this.failedTry(err);
  }

  onTcpError(err: Error, reused: boolean): void {
    this.tcpConn = null;
    if (reused && !this.staleRetried && !this.done) {
      // A reused connection the upstream had closed meanwhile: once more on a new one, no health penalty.
      this.staleRetried = true;
      this.sendTcp(true);
      return;
    }
    this.endTry();
    this.failedTry(err);
  }

  onDeadline(): void {
    this.endTry();
    this.failedTry(null);
  }

  private failedTry(err: Error | null): void {
    const up = this.current as Upstream;
    if (this.afterTc) {
      // Its UDP answered (truncated): only its TCP is in question, and that is tracked on its own.
      this.afterTc = false;
      up.tcpFailedAt = performance.now();
      up.m.tcpFailures.inc();
      this.skipMask |= 1 << this.currentIndex;
      this.tryNext();
      return;
    }
    if (err !== null) {
      this.skipMask |= 1 << this.currentIndex;
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== undefined && LOCAL_ERRORS.has(code)) {
        // Our own shortage (no file descriptors, no buffers), not the upstream's fault: no health penalty.
        this.fwd.localError(code);
        this.tryNext();
        return;
      }
      // A transport error is the upstream's (or its path's): it counts toward max_fails, and the health_check
      // probes that follow (the upstream is now suspect) count on from there. No probe at once: it would
      // usually fail the same way and count the one error twice.
      up.failed(this.fwd.opts.maxFails, code ?? err.message);
      this.tryNext();
      return;
    }
    // A timeout says this question was slow, maybe only its authority: no failure counted, but a probe asks
    // whether the upstream itself still answers (CoreDNS's rule); a failed probe is what counts.
    up.m.timeouts.inc();
    if (this.fwd.opts.maxFails > 0) up.probe(this.fwd.opts);
    this.tryNext();
  }

  check(reply: Buffer): RejectReason | undefined {
    return mismatch(reply, this.query, this.qEnd);
  }

  onUdpIgnored(reason: RejectReason): void {
    this.fwd.metrics.ignored(reason);
  }

  onTcpIgnored(reason: RejectReason): void {
    this.fwd.metrics.ignored(reason);
  }

  // ------------------------------------------------------------------------------------------- settling

  private succeed(reply: Buffer, layout: MessageLayout, upstream: string | undefined): void {
    this.done = true;
    this.fwd.settle(this);
    this.deliver(reply, layout, edeOf(reply, layout), false, upstream);
  }

  /**
   * Total failure. A truncated answer whose TCP retry failed, when one came, goes to UDP clients (an answer
   * exists: they ask again over TCP themselves); else an upstream's SERVFAIL is passed on; else our own SERVFAIL.
   */
  private fail(why: ForwardFailure): void {
    if (this.truncated !== null) {
      this.done = true;
      this.fwd.settle(this);
      this.deliverTruncated(this.truncated, this.truncatedLayout as MessageLayout);
      return;
    }
    if (this.servfail !== null) return this.succeed(this.servfail, this.servfailLayout as MessageLayout, this.servfailFrom);
    this.done = true;
    this.fwd.settle(this);
    this.deliverFailure(why);
  }

  abort(): void {
    if (this.done) return;
    this.endTry();
    this.done = true;
    this.fwd.settle(this);
    this.deliverFailure('shutdown');
  }

  private failureResponse(ede: Ede): { wire: Buffer; layout: MessageLayout } {
    const base = this.ctx.reply(Rcode.SERVFAIL, ede);
    return { wire: base.wire, layout: base.layout as MessageLayout };
  }

  private deliverFailure(why: ForwardFailure): void {
    const base = this.failureResponse(FAILURE_EDE[why]);
    this.deliver(base.wire, base.layout, FAILURE_EDE[why], true);
  }

  private deliverTruncated(reply: Buffer, layout: MessageLayout): void {
    let failure: { wire: Buffer; layout: MessageLayout } | null = null;
    const one = (cb: Callback, tcp: boolean): void => {
      if (!tcp) return this.call(cb, reply, layout, TCP_FAILED_EDE, false);
      // A TCP client cannot retry over TCP: for it this is a failure.
      if (failure === null) failure = this.failureResponse(TCP_FAILED_EDE);
      this.call(cb, failure.wire, failure.layout, TCP_FAILED_EDE, true);
    };
    one(this.first, this.firstTcp);
    const more = this.more;
    if (more !== null) for (let i = 0; i < more.length; i++) one(more[i], (this.moreTcp as boolean[])[i]);
  }

  private deliver(reply: Buffer, layout: MessageLayout, ede: Ede | undefined, local: boolean, upstream?: string): void {
    this.call(this.first, reply, layout, ede, local, upstream);
    const more = this.more;
    if (more !== null) for (let i = 0; i < more.length; i++) this.call(more[i], reply, layout, ede, local, upstream);
  }

  private call(cb: Callback, reply: Buffer, layout: MessageLayout, ede: Ede | undefined, local: boolean, upstream?: string): void {
    try {
      // Each waiter its own DnsResponse over the same bytes (responses are never written in place); the
      // writer gives each client its own ID, question case and OPT.
      const res = DnsResponse.fromWire(reply, layout);
      if (ede !== undefined) res.ede = ede;
      if (local) res.localFailure = true;
      res.upstream = upstream;
      cb(null, res);
    } catch (e) {
      // One waiter's failure downstream must not keep the answer from the others.
      this.fwd.log.error('delivering a forwarded answer failed', { error: e instanceof Error ? e.message : String(e) });
    }
  }
}
