/**
 * The blocked answer: NXDOMAIN, NODATA, 0.0.0.0 / :: (null), or configured addresses — always with Extended DNS
 * Error 15 (Blocked, RFC 8914), which is how a client, the query log and the dashboard tell a block from a name
 * that does not exist.
 */
import * as net from 'node:net';
import type { QueryContext } from '../../core/context';
import { DnsResponse } from '../../core/response';
import { Rcode } from '../../core/wire/constants';

export const EDE_BLOCKED = Object.freeze({ code: 15, text: 'blocked by filter' });
const TYPE_A = 1;
const TYPE_AAAA = 28;

export type AnswerMode = 'nxdomain' | 'nodata' | 'null' | 'address';

export class BlockedAnswer {
  private readonly v4: string[];
  private readonly v6: string[];

  constructor(readonly mode: AnswerMode, addresses: readonly string[], readonly ttl: number) {
    if (mode === 'null') {
      this.v4 = ['0.0.0.0'];
      this.v6 = ['::'];
    } else {
      this.v4 = addresses.filter((a) => net.isIPv4(a));
      this.v6 = addresses.filter((a) => net.isIPv6(a));
    }
  }

  reply(ctx: QueryContext): DnsResponse {
    if (this.mode === 'nxdomain') return ctx.reply(Rcode.NXDOMAIN, EDE_BLOCKED);
    const list = ctx.qtype === TYPE_A ? this.v4 : ctx.qtype === TYPE_AAAA ? this.v6 : [];
    if (this.mode === 'nodata' || list.length === 0) return ctx.reply(Rcode.NOERROR, EDE_BLOCKED);
    const question = ctx.message.questions?.[0];
    if (question === undefined) return ctx.reply(Rcode.NOERROR, EDE_BLOCKED);
    const type = ctx.qtype === TYPE_A ? 'A' : 'AAAA';
    const res = DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [question], answers: list.map((data) => ({ name: question.name, type, ttl: this.ttl, data })) });
    res.ede = EDE_BLOCKED;
    return res;
  }
}
