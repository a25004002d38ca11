// ISC's DNS compliance checks (DNS-Compliance-Testing's genreport: the `dns`, `aa`, `ad`, `cd`, `ra`, `rd`,
// `tc`, `zflag`, `opcode`, `opcodeflg`, `type666`, `tcp` and EDNS tests), written out by hand so `npm test` needs
// no C build of genreport (bench/README.md has the binary's own report, which these verdicts match). Each case
// is sent as genreport sends it (recursive mode, `-R`: RD set) and judged by genreport's rules. When unbound is installed (/usr/sbin/unbound) it runs beside
// us as a forwarder to the same loopback upstream, and no case may pass on unbound and fail on codexdns.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import * as dnsPacket from 'dns-packet';
import { startServer, startFakeUpstream, exchangeRaw, query, type FakeUpstream, type TestServer } from '../testing';
import { freePort } from './helpers/childServer';

interface Case {
  readonly name: string;
  readonly udpsize: number;
  readonly eflags: number;
  readonly version: number;
  readonly tcp?: boolean;
  readonly cookie?: boolean;
  readonly ignoreTc?: boolean;
  readonly tc?: boolean;
  readonly rd?: boolean;
  readonly ra?: boolean;
  readonly cd?: boolean;
  readonly ad?: boolean;
  readonly aa?: boolean;
  readonly z?: boolean;
  readonly opcode: number;
  readonly type: number;
  readonly rdata?: Buffer;
}

const SOA = 6;
const DNSKEY = 48;
const hex = (h: string): Buffer => Buffer.from(h.replace(/ /g, ''), 'hex');
const NSID = hex('0003 0000');
const ECS = hex('0008 0004 0001 0000');
const EXPIRE = hex('0009 0000');
const COOKIE = hex('000a 0008 0102030405060708');

/** genreport's table (FULL and EDNS groups), same names, same bits. */
const CASES: readonly Case[] = [
  { name: 'dns', udpsize: 0, eflags: 0, version: 0, opcode: 0, type: SOA },
  { name: 'aa', udpsize: 0, eflags: 0, version: 0, aa: true, opcode: 0, type: SOA },
  { name: 'ad', udpsize: 0, eflags: 0, version: 0, ad: true, opcode: 0, type: SOA },
  { name: 'cd', udpsize: 0, eflags: 0, version: 0, cd: true, opcode: 0, type: SOA },
  { name: 'ra', udpsize: 0, eflags: 0, version: 0, ra: true, opcode: 0, type: SOA },
  { name: 'rd', udpsize: 0, eflags: 0, version: 0, rd: true, opcode: 0, type: SOA },
  { name: 'tc', udpsize: 0, eflags: 0, version: 0, tc: true, opcode: 0, type: SOA },
  { name: 'zflag', udpsize: 0, eflags: 0, version: 0, z: true, opcode: 0, type: SOA },
  { name: 'opcode', udpsize: 0, eflags: 0, version: 0, opcode: 15, type: 0 },
  { name: 'opcodeflg', udpsize: 0, eflags: 0, version: 0, tc: true, rd: true, ra: true, cd: true, ad: true, aa: true, z: true, opcode: 15, type: 0 },
  { name: 'type666', udpsize: 0, eflags: 0, version: 0, opcode: 0, type: 666 },
  { name: 'tcp', udpsize: 0, eflags: 0, version: 0, tcp: true, opcode: 0, type: SOA },
  { name: 'edns', udpsize: 4096, eflags: 0, version: 0, opcode: 0, type: SOA },
  { name: 'edns1', udpsize: 4096, eflags: 0, version: 1, opcode: 0, type: SOA },
  { name: 'edns@512', udpsize: 512, eflags: 0, version: 0, ignoreTc: true, opcode: 0, type: DNSKEY },
  { name: 'ednsopt', udpsize: 4096, eflags: 0, version: 0, opcode: 0, type: SOA, rdata: hex('0064 0000') },
  { name: 'edns1opt', udpsize: 4096, eflags: 0, version: 1, opcode: 0, type: SOA, rdata: hex('0064 0000') },
  { name: 'do', udpsize: 4096, eflags: 0x8000, version: 0, opcode: 0, type: SOA },
  { name: 'docd', udpsize: 4096, eflags: 0x8000, version: 0, cd: true, opcode: 0, type: SOA },
  { name: 'edns1do', udpsize: 4096, eflags: 0x8000, version: 1, opcode: 0, type: SOA },
  { name: 'ednsflags', udpsize: 4096, eflags: 0x0080, version: 0, opcode: 0, type: SOA },
  { name: 'optlist', udpsize: 4096, eflags: 0, version: 0, cookie: true, opcode: 0, type: SOA, rdata: Buffer.concat([NSID, ECS, EXPIRE, COOKIE]) },
  { name: 'ednsnsid', udpsize: 4096, eflags: 0, version: 0, opcode: 0, type: SOA, rdata: NSID },
  { name: 'ednscookie', udpsize: 4096, eflags: 0, version: 0, cookie: true, opcode: 0, type: SOA, rdata: COOKIE },
  { name: 'ednsexpire', udpsize: 4096, eflags: 0, version: 0, opcode: 0, type: SOA, rdata: EXPIRE },
  { name: 'ednssubnet', udpsize: 4096, eflags: 0, version: 0, opcode: 0, type: SOA, rdata: ECS },
  { name: 'edns1nsid', udpsize: 4096, eflags: 0, version: 1, opcode: 0, type: SOA, rdata: NSID },
  { name: 'edns1cookie', udpsize: 4096, eflags: 0, version: 1, cookie: true, opcode: 0, type: SOA, rdata: COOKIE },
  { name: 'edns1expire', udpsize: 4096, eflags: 0, version: 1, opcode: 0, type: SOA, rdata: EXPIRE },
  { name: 'edns1subnet', udpsize: 4096, eflags: 0, version: 1, opcode: 0, type: SOA, rdata: ECS },
  { name: 'ednstcp', udpsize: 512, eflags: 0x8000, version: 0, tcp: true, opcode: 0, type: DNSKEY },
];

const ZONE = 'compliance.example';

/** The request as genreport's `dotest` builds it (res_mkquery, then the test's bits, then the OPT record). */
function request(c: Case, id: number): Buffer {
  const labels = ZONE.split('.');
  const parts: Buffer[] = [Buffer.alloc(12)];
  for (const l of labels) parts.push(Buffer.from([l.length]), Buffer.from(l));
  parts.push(Buffer.from([0, c.type >> 8, c.type & 0xff, 0, 1]));
  let buf = Buffer.concat(parts);
  buf.writeUInt16BE(id, 0);
  buf.writeUInt16BE(1, 4);
  if (c.opcode !== 0) {
    // genreport keeps only the header for another opcode, with QDCOUNT 0 for opcode 15.
    buf = buf.subarray(0, 12);
    buf[2] = (buf[2] & 0x17) | ((c.opcode & 0x0f) << 3);
    if (c.opcode === 15) buf[4] = buf[5] = 0;
  }
  if (c.tc) buf[2] |= 0x02;
  buf[2] |= 0x01; // recursive mode: RD always
  if (c.aa) buf[2] |= 0x04;
  if (c.ra) buf[3] |= 0x80;
  if (c.z) buf[3] |= 0x40;
  if (c.ad) buf[3] |= 0x20;
  if (c.cd) buf[3] |= 0x10;
  if (c.udpsize > 0) {
    const rdata = c.rdata ?? Buffer.alloc(0);
    const o = Buffer.alloc(11 + rdata.length);
    o.writeUInt16BE(41, 1);
    o.writeUInt16BE(c.udpsize, 3);
    o.writeUInt32BE(((c.version << 16) | c.eflags) >>> 0, 5);
    o.writeUInt16BE(rdata.length, 9);
    rdata.copy(o, 11);
    buf = Buffer.concat([buf, o]);
    buf[11] += 1;
  }
  return buf;
}

/** genreport's verdict on a reply in recursive mode: 'ok' or the tags it would print. */
function judge(c: Case, req: Buffer, reply: Buffer | null): string {
  if (reply === null) return 'timeout';
  if (reply.length < 12 || reply.readUInt16BE(0) !== req.readUInt16BE(0)) return 'malformed';
  const tags: string[] = [];
  const flags = reply.readUInt16BE(2);
  const opcode = (flags >> 11) & 0xf;
  const aa = (flags & 0x0400) !== 0;
  const rd = (flags & 0x0100) !== 0;
  const ra = (flags & 0x0080) !== 0;
  const z = (flags & 0x0040) !== 0;
  const ad = (flags & 0x0020) !== 0;
  const cd = (flags & 0x0010) !== 0;
  let rcode = flags & 0x0f;
  let packet: dnsPacket.Packet;
  try {
    packet = dnsPacket.decode(reply);
  } catch {
    return 'malformed';
  }
  const optRr = (packet.additionals ?? []).find((r) => r.type === 'OPT') as unknown as { flags?: number; extendedRcode?: number; version?: number; options?: { code: number }[] } | undefined;
  const seenopt = optRr !== undefined;
  // dns-packet folds the OPT TTL into these fields; rebuild the TTL genreport reads.
  const ednsttl = seenopt ? (((optRr!.extendedRcode ?? 0) << 24) | ((optRr!.version ?? 0) << 16) | (optRr!.flags ?? 0)) >>> 0 : 0;
  if (seenopt) rcode += (ednsttl >>> 24) << 4;
  const seensoa = (packet.answers ?? []).some((r) => r.type === 'SOA');
  const seenecho = seenopt && (optRr!.options ?? []).some((o) => o.code === 100);
  const seencookie = seenopt && (optRr!.options ?? []).some((o) => o.code === 10);
  if (c.opcode !== opcode) tags.push(`opcode${opcode}`);
  if (c.version === 0) {
    if (c.opcode === 0 && ((rcode !== 0 && !c.cookie) || (rcode !== 0 && (rcode !== 23 || !seencookie) && c.cookie))) tags.push(`rcode${rcode}`);
    if (c.opcode !== 0 && rcode !== 4) tags.push(`rcode${rcode}`);
  }
  if (c.version !== 0 && rcode !== 16) tags.push(`rcode${rcode}`);
  const ednsvers = (ednsttl >>> 16) & 0xff;
  if (seenopt && ednsvers !== 0) tags.push('version-not-zero');
  if (seenopt && ((ednsvers < c.version && rcode !== 16) || (ednsvers >= c.version && rcode === 16))) tags.push('badversion');
  if (!seenopt && c.udpsize) tags.push('noopt');
  if (seenopt && c.udpsize === 0) tags.push('opt');
  if (c.type === SOA && c.version === 0 && !c.ignoreTc && !seensoa && rcode === 0) tags.push('nosoa');
  if (c.type === SOA && seensoa && (c.version !== 0 || rcode !== 0)) tags.push('soa');
  if (seenecho) tags.push('echoed');
  if (aa) tags.push('aa'); // recursive mode: a forwarder's answers are not authoritative
  if (ra && c.opcode) tags.push('ra');
  if (!rd && c.opcode === 0) tags.push('nord');
  if (ad && (c.opcode || (!c.ad && (c.eflags & 0x8000) === 0))) tags.push('ad');
  if (cd && (c.opcode || !c.cd)) tags.push('cd');
  if (z) tags.push('z');
  if ((ednsttl & 0x7fff) !== 0) tags.push('mbz');
  if (c.ignoreTc && reply.length > (c.udpsize || 512)) tags.push('toobig');
  return tags.length ? tags.join(',') : 'ok';
}

async function runAll(port: number): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let id = 0x4000;
  for (const c of CASES) {
    const req = request(c, ++id);
    const reply = await exchangeRaw(req, { port, tcp: c.tcp, timeoutMs: 3000 });
    out.set(c.name, judge(c, req, reply));
  }
  return out;
}

const UNBOUND = '/usr/sbin/unbound';

describe('DNS compliance (genreport\'s cases, by hand)', () => {
  let up: FakeUpstream;
  let s: TestServer;
  before(async () => {
    up = await startFakeUpstream({
      unknown: 'NOERROR',
      records: {
        [ZONE]: {
          SOA: { mname: `ns.${ZONE}`, rname: `hostmaster.${ZONE}`, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum: 60 },
          NS: `ns.${ZONE}`,
        },
      },
    });
    s = await startServer(`servers:\n  - listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]\n    plugins:\n      - forward: { to: ["${up.address}"] }\n`);
  });
  after(async () => {
    await s.stop();
    await up.stop();
  });

  test('codexdns passes every case', async () => {
    const ours = await runAll(s.port);
    const failed = [...ours].filter(([, v]) => v !== 'ok');
    assert.deepEqual(failed, [], failed.map(([k, v]) => `${k}: ${v}`).join('\n'));
  });

  test('no case that unbound passes fails on codexdns', { skip: fs.existsSync(UNBOUND) ? false : 'unbound is not installed' }, async () => {
    const port = await freePort();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-unbound-'));
    const conf = path.join(dir, 'unbound.conf');
    fs.writeFileSync(conf, `server:
  interface: 127.0.0.1@${port}
  port: ${port}
  interface-automatic: no
  do-ip6: no
  num-threads: 1
  so-reuseport: no
  chroot: ""
  username: ""
  directory: "${dir}"
  pidfile: "${dir}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  module-config: "iterator"
  do-not-query-localhost: no
  harden-referral-path: no
  qname-minimisation: no
  access-control: 127.0.0.0/8 allow
  local-zone: "example." nodefault
remote-control:
  control-enable: no
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@${up.port}
`);
    let child: ChildProcess | undefined;
    try {
      child = spawn(UNBOUND, ['-d', '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      const until = Date.now() + 10_000;
      for (;;) {
        try {
          await query(ZONE, 'SOA', { port, timeoutMs: 500 });
          break;
        } catch {
          if (Date.now() > until || child.exitCode !== null) assert.fail(`unbound did not start: ${err}`);
        }
      }
      const theirs = await runAll(port);
      const ours = await runAll(s.port);
      const table = CASES.map((c) => `${c.name.padEnd(12)} unbound ${theirs.get(c.name)!.padEnd(22)} codexdns ${ours.get(c.name)}`).join('\n');
      process.stdout.write(`# ${table.replace(/\n/g, '\n# ')}\n`);
      const worse = CASES.filter((c) => theirs.get(c.name) === 'ok' && ours.get(c.name) !== 'ok').map((c) => c.name);
      assert.deepEqual(worse, [], table);
    } finally {
      child?.kill('SIGTERM');
      if (child && child.exitCode === null) await new Promise((r) => child!.once('exit', r));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
