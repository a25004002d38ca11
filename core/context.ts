import * as dnsPacket from 'dns-packet';
import { DnsResponse, type ExtendedError } from './response';
import { Rcode } from './wire/constants';
import { errorReply } from './wire/finalize';
import type { ParsedQuery } from './wire/query';
import { wireKeyToText } from './wire/names';

/** Who asked, and over what. */
export interface ClientInfo {
  readonly address: string;
  readonly port: number;
  readonly family: 4 | 6;
  readonly transport: 'udp' | 'tcp';
  /** The local address the query reached (replies leave from it). */
  readonly localAddress: string;
  /** The client's EDNS UDP size as advertised, or 0 without EDNS. */
  readonly ednsSize: number;
  readonly dnssecOk: boolean;
  readonly checkingDisabled: boolean;
}

/** How the rest of the chain answers `nextThen`: a failure, or a response (never neither). */
export type NextCallback = (err: Error | null, res?: DnsResponse) => void;

/** The rest of a chain below one position, bound to that position when the chain is compiled. */
export interface NextFn {
  (ctx: QueryContext): Promise<DnsResponse>;
  /** The same walk answering through a callback: no promise, and the answer comes in the same tick. */
  readonly viaCallback: (ctx: QueryContext, cb: NextCallback) => void;
}

/** Outside a chain (a context built by hand, in a bench or a test) nothing is below: SERVFAIL. */
const nothingBelow: NextFn = Object.assign((ctx: QueryContext) => Promise.resolve(ctx.reply(Rcode.SERVFAIL)), {
  viaCallback: (ctx: QueryContext, cb: NextCallback) => cb(null, ctx.reply(Rcode.SERVFAIL)),
});

/**
 * Everything about one query that plugins see. The message is decoded only when a plugin reads `message`:
 * the cache-hit path never decodes.
 */
export class QueryContext {
  readonly raw: Buffer;
  readonly query: ParsedQuery;
  readonly client: ClientInfo;
  /** The zone of the server block that took this query ('' is the root). */
  readonly zone: string;
  /** The server block's name (`block0`, …) for metrics. */
  readonly server: string;
  /** Monotonic milliseconds when the query arrived. */
  readonly startedAt: number;
  /** Set by a policy plugin (acl) to say this client is not one of ours: tracking skips it. */
  denied: string | undefined;
  /** Size and header flags of the bytes actually written (after truncation for this client); set before `served`. */
  replySize: number | undefined;
  replyFlags: number | undefined;
  /**
   * What `next()` runs: the compiled chain points it at the rest below each tap as it enters that tap. For the
   * chain only; a plugin that needs the rest later takes `boundNext()`.
   */
  below: NextFn = nothingBelow;
  private decoded: dnsPacket.Packet | undefined;
  private name: string | undefined;

  constructor(raw: Buffer, query: ParsedQuery, client: ClientInfo, zone: string, server: string, startedAt: number) {
    this.raw = raw;
    this.query = query;
    this.client = client;
    this.zone = zone;
    this.server = server;
    this.startedAt = startedAt;
  }

  /** The query decoded by dns-packet, on first use. */
  get message(): dnsPacket.Packet {
    if (this.decoded === undefined) this.decoded = dnsPacket.decode(this.raw);
    return this.decoded;
  }

  /**
   * The question name, lower case, without the trailing dot ('' for the root), in RFC 1035 presentation form:
   * a dot, a backslash or an unprintable byte inside a label is escaped (`a\.b`, `\010`), so the text names
   * exactly one name. Compare zones with `wireKeyInZone` on `query.wireKey`, not by string suffix.
   */
  get qname(): string {
    if (this.name === undefined) this.name = wireKeyToText(this.query.wireKey);
    return this.name;
  }

  get qtype(): number {
    return this.query.qtype;
  }

  get qtypeName(): string {
    return typeName(this.query.qtype);
  }

  /**
   * Runs the rest of the chain below the calling plugin and resolves with its response (or rejects with its
   * failure). A tap that calls `next()` must return a response itself (usually this one).
   */
  next(): Promise<DnsResponse> {
    return this.below(this);
  }

  /**
   * `next()` with a callback instead of a promise, for a tap on the per-query path (the cache's miss): the
   * promise, its executor and the two reactions are a measurable share of a miss. `cb` is called once; an
   * exception it throws goes to whoever answered from below, so it should not throw.
   */
  nextThen(cb: NextCallback): void {
    this.below.viaCallback(this, cb);
  }

  /**
   * `next()` bound to the calling tap's position, for use after the tap has answered (a refresh in the
   * background): by then the walk has moved on, and a plain `next()` would no longer start below the caller.
   * Take it while the tap runs.
   */
  boundNext(): () => Promise<DnsResponse> {
    const below = this.below;
    return () => below(this);
  }

  /** A reply with just the question and an RCODE (REFUSED, SERVFAIL, NXDOMAIN…), optionally with an EDE. */
  reply(rcode: number, ede?: ExtendedError): DnsResponse {
    const res = DnsResponse.fromWire(errorReply(this.raw, this.query.id, this.query.flags, this.query.questionEnd, rcode, 0, false));
    res.ede = ede;
    return res;
  }
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const types = require('dns-packet/types') as { toString(type: number): string };

export function typeName(type: number): string {
  return types.toString(type);
}
