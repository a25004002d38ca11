/**
 * The answer path: from a question and the name table to a DNS message (or to nothing, so the query goes on
 * down the chain). No I/O, no allocation for a query that is not ours beyond a few string comparisons.
 */
import type * as dnsPacket from 'dns-packet';
import type { QueryContext } from '../../core/context';
import { DnsResponse } from '../../core/response';
import { Rcode, RrType } from '../../core/wire/constants';
import { addressOfReverse, zoneOf } from './labels';
import type { Addresses, NameTable } from './nameTable';

export interface AnswerConfig {
  /** Forward zones, lower case without the trailing dot; the first one names devices in PTR answers. */
  readonly zones: readonly string[];
  readonly reverseZones: readonly string[];
  readonly ttl: number;
  /** The SOA's TTL and MINIMUM: how long a resolver keeps NXDOMAIN / NODATA (RFC 2308). */
  readonly negativeTtl: number;
}

/** Answers by kind, plain integers (read into Prometheus when scraped). */
export class AnswerStats {
  answered = 0;
  nodata = 0;
  nxdomain = 0;
  ptr = 0;
  /** PTR questions in a reverse zone we serve about an address without a name: passed down the chain. */
  passed = 0;
}

/** SOA timers other than the negative TTL: nothing transfers these zones, so they only have to be sane. */
const SOA_REFRESH = 3600;
const SOA_RETRY = 600;
const SOA_EXPIRE = 86400;

export class Answerer {
  readonly stats = new AnswerStats();

  constructor(
    private readonly cfg: AnswerConfig,
    private readonly table: NameTable,
  ) {}

  /** The tap of the `query` hook: a response for names in our zones, undefined for everything else. */
  answer(ctx: QueryContext): DnsResponse | undefined {
    const name = ctx.qname;
    if (name.endsWith('.arpa')) {
      const rz = zoneOf(name, this.cfg.reverseZones);
      if (rz !== undefined) return this.reverse(ctx, name);
    }
    const zone = zoneOf(name, this.cfg.zones);
    if (zone === undefined) return undefined;
    return this.forward(ctx, name, zone);
  }

  private forward(ctx: QueryContext, name: string, zone: string): DnsResponse {
    const qtype = ctx.qtype;
    if (name === zone) {
      if (qtype === RrType.SOA) return this.respond(ctx, [this.soa(zone)], [], Rcode.NOERROR, 'answered');
      return this.respond(ctx, [], [this.soa(zone)], Rcode.NOERROR, 'nodata');
    }
    const label = name.slice(0, name.length - zone.length - 1);
    const found = label.includes('.') ? undefined : this.table.lookup(label);
    if (found === undefined) return this.respond(ctx, [], [this.soa(zone)], Rcode.NXDOMAIN, 'nxdomain');
    const records = this.addressRecords(ctx, found, qtype);
    if (records.length === 0) return this.respond(ctx, [], [this.soa(zone)], Rcode.NOERROR, 'nodata');
    return this.respond(ctx, records, [], Rcode.NOERROR, 'answered');
  }

  private reverse(ctx: QueryContext, name: string): DnsResponse | undefined {
    const ip = ctx.qtype === RrType.PTR || ctx.qtype === RrType.ANY ? addressOfReverse(name) : undefined;
    const labels = ip === undefined ? undefined : this.table.labelsOf(ip);
    if (labels === undefined) {
      // Not one of ours: the rest of the chain (forward's private resolvers, a zone file) may know it.
      this.stats.passed++;
      return undefined;
    }
    const owner = ctx.message.questions?.[0]?.name ?? name;
    const zone = this.cfg.zones[0];
    const answers = labels.map((l): dnsPacket.Answer => ({ name: owner, type: 'PTR', class: 'IN', ttl: this.cfg.ttl, data: `${l}.${zone}` }));
    return this.respond(ctx, answers, [], Rcode.NOERROR, 'ptr');
  }

  private addressRecords(ctx: QueryContext, found: Addresses, qtype: number): dnsPacket.Answer[] {
    const owner = ctx.message.questions?.[0]?.name ?? ctx.qname;
    const ttl = this.cfg.ttl;
    const out: dnsPacket.Answer[] = [];
    if (qtype === RrType.A || qtype === RrType.ANY) for (const a of found.a) out.push({ name: owner, type: 'A', class: 'IN', ttl, data: a });
    if (qtype === RrType.AAAA || qtype === RrType.ANY) for (const a of found.aaaa) out.push({ name: owner, type: 'AAAA', class: 'IN', ttl, data: a });
    return out;
  }

  private soa(zone: string): dnsPacket.Answer {
    const neg = this.cfg.negativeTtl;
    return {
      name: zone,
      type: 'SOA',
      class: 'IN',
      ttl: neg,
      data: {
        mname: zone,
        rname: `hostmaster.${zone}`,
        // Any change of the table is a new version of the zone.
        serial: this.table.version >>> 0,
        refresh: SOA_REFRESH,
        retry: SOA_RETRY,
        expire: SOA_EXPIRE,
        minimum: neg,
      },
    };
  }

  private respond(ctx: QueryContext, answers: dnsPacket.Answer[], authorities: dnsPacket.Answer[], rcode: number, kind: keyof AnswerStats): DnsResponse {
    this.stats[kind]++;
    const question = ctx.message.questions?.[0];
    const res = DnsResponse.fromPacket({
      type: 'response',
      id: ctx.query.id,
      flags: rcode,
      questions: question === undefined ? [] : [question],
      answers,
      authorities,
    });
    res.authoritative = true;
    return res;
  }
}
