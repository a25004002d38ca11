import * as dnsPacket from 'dns-packet';
import { DnsResponse, type ExtendedError } from './response';
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

/** Runs the part of the chain below a given plugin position; provided by the chain. */
export interface ChainRunner {
  runFrom(ctx: QueryContext, afterPosition: number): Promise<DnsResponse>;
}

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
  /** Index of the plugin whose `query` tap is running; maintained by the chain for `next()`. */
  position = -1;
  private decoded: dnsPacket.Packet | undefined;
  private name: string | undefined;
  private readonly runner: ChainRunner;

  constructor(raw: Buffer, query: ParsedQuery, client: ClientInfo, zone: string, server: string, startedAt: number, runner: ChainRunner) {
    this.raw = raw;
    this.query = query;
    this.client = client;
    this.zone = zone;
    this.server = server;
    this.startedAt = startedAt;
    this.runner = runner;
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
    const from = this.position;
    return this.runner.runFrom(this, from).finally(() => {
      this.position = from;
    });
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
