import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as dnsPacket from 'dns-packet';
import { startServer, startFakeUpstream } from '../testing';
import { definePlugin, type AnyPluginDefinition } from '../core/plugin';
import { Type } from '../config/types';
import { DnsResponse } from '../core/response';
import { builtinCatalog } from '../server/catalog';
import { nextLabelDot, wireKeyInZone, wireKeyToText, zoneWireKey } from '../core/wire/names';
import { compileFormat, type QueryRecord } from '../plugins/log';
import { privateZoneOf } from '../plugins/forward/private';

/** Answers every A with `address`: tells which block took a query. */
const answerer = definePlugin({
  name: 'answerer',
  options: Type.Object({ address: Type.String({ default: '192.0.2.1' }) }),
  setup(api, opts) {
    api.hooks.query.tap('answerer', (ctx) => {
      // Answer with the client's own question bytes so a name with odd labels is echoed exactly.
      const raw = ctx.raw;
      const out = Buffer.alloc(ctx.query.questionEnd + 16);
      raw.copy(out, 0, 0, ctx.query.questionEnd);
      out.writeUInt16BE(0x8180, 2);
      out.writeUInt16BE(1, 6);
      out.writeUInt16BE(0, 8);
      out.writeUInt16BE(0, 10);
      const p = ctx.query.questionEnd;
      out.writeUInt16BE(0xc00c, p);
      out.writeUInt16BE(1, p + 2);
      out.writeUInt16BE(1, p + 4);
      out.writeUInt32BE(60, p + 6);
      out.writeUInt16BE(4, p + 10);
      Buffer.from(opts.address.split('.').map(Number)).copy(out, p + 12);
      return DnsResponse.fromWire(out);
    });
  },
});
const catalog = { get: (n: string) => (n === 'answerer' ? (answerer as unknown as AnyPluginDefinition) : builtinCatalog.get(n)), names: () => builtinCatalog.names() };

/** A query whose question name is exactly these labels (a label may contain any byte, a dot included). */
function rawQuery(labels: string[], type = 1, id = 7): Buffer {
  const parts: Buffer[] = [Buffer.from([id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0])];
  for (const l of labels) {
    const b = Buffer.from(l, 'latin1');
    parts.push(Buffer.from([b.length]), b);
  }
  parts.push(Buffer.from([0, type >> 8, type & 0xff, 0, 1]));
  return Buffer.concat(parts);
}

const key = (labels: string[]): string => labels.map((l) => String.fromCharCode(l.length) + l).join('') + '\0';

describe('names as wire labels', () => {
  test('presentation form escapes dots, backslashes and unprintable bytes inside a label', () => {
    assert.equal(wireKeyToText(key(['www', 'example', 'org'])), 'www.example.org');
    assert.equal(wireKeyToText(key(['a.b', 'example'])), 'a\\.b.example');
    assert.equal(wireKeyToText(key(['evil\nline', 'x'])), 'evil\\010line.x');
    assert.equal(wireKeyToText(key(['back\\slash', 'sp ace', '\xff'])), 'back\\\\slash.sp\\032ace.\\255');
    assert.equal(wireKeyToText('\0'), '');
  });

  test('zone membership compares labels: a label holding a dot is not two labels', () => {
    const lan = zoneWireKey('lan');
    assert.equal(wireKeyInZone(key(['nas', 'lan']), lan), true);
    assert.equal(wireKeyInZone(key(['lan']), lan), true);
    assert.equal(wireKeyInZone(key(['nas.lan']), lan), false);
    assert.equal(wireKeyInZone(key(['xlan']), lan), false);
    assert.equal(wireKeyInZone(key(['a', 'b']), zoneWireKey('.')), true);
    assert.equal(wireKeyInZone(key(['x', 'home.arpa']), zoneWireKey('home.arpa')), false);
  });

  test('the private-zone test skips escaped dots', () => {
    assert.equal(nextLabelDot('a\\.b.c', 0), 4);
    assert.equal(nextLabelDot('a\\\\.b', 0), 3);
    assert.equal(privateZoneOf(wireKeyToText(key(['x', 'home', 'arpa']))), 'home.arpa');
    assert.equal(privateZoneOf(wireKeyToText(key(['x.home', 'arpa']))), undefined);
    assert.equal(privateZoneOf(wireKeyToText(key(['1.168.192.in-addr', 'arpa']))), undefined);
  });

  test('a log line cannot be forged by a label holding a newline', () => {
    const r: QueryRecord = {
      time: 0, remote: '192.168.1.5', port: 4000, id: 1, qtype: 1, qclass: 1, wireKey: key(['x" NOERROR\n127.0.0.1:1 - 1 "A IN forged.', 'example']),
      proto: 'udp', size: 40, dnssecOk: false, ednsSize: 0, rcode: 0, flags: 0x8180, rsize: 56, duration: 0.0001, server: 'block0', plugin: 'x',
    };
    const line = compileFormat('{common}')(r);
    assert.ok(!line.includes('\n'), line);
    assert.ok(line.includes(String.raw`"A IN x\"\032NOERROR\010127\.0\.0\.1:1\032-\0321\032\"A\032IN\032forged\..example. udp 40 `), line);
  });

  test('a label holding a dot does not pick another block', async () => {
    const s = await startServer(`servers:
  - listen: [udp://127.0.0.1:0]
    plugins:
      - answerer: { address: 192.0.2.1 }
  - listen: [udp://127.0.0.1:0]
    zones: [lan]
    plugins:
      - answerer: { address: 192.0.2.2 }
`, { catalog });
    try {
      const addr = async (labels: string[]): Promise<string> => {
        const raw = await s.exchange(rawQuery(labels));
        assert.ok(raw);
        const d = dnsPacket.decode(raw!);
        return (d.answers![0] as { data: string }).data;
      };
      assert.equal(await addr(['nas', 'lan']), '192.0.2.2');
      assert.equal(await addr(['nas.lan']), '192.0.2.1');
      assert.equal(await addr(['nas', 'x.lan']), '192.0.2.1');
    } finally {
      await s.stop();
    }
  });

  test('a label holding a dot is not taken for a locally served private zone; the log line shows it escaped', async () => {
    const up = await startFakeUpstream({ unknown: 'NXDOMAIN' });
    const s = await startServer(`servers:
  - listen: [udp://127.0.0.1:0]
    plugins:
      - log: { flush: 50ms }
      - forward: { to: ["${up.address}"] }
`);
    try {
      const real = await s.exchange(rawQuery(['nas', 'home', 'arpa']));
      assert.ok(real);
      assert.equal(up.count(), 0, 'home.arpa is answered locally');
      assert.equal(real![3] & 0x0f, 3, 'NXDOMAIN from the local zone');
      const odd = await s.exchange(rawQuery(['nas.home', 'arpa'], 1, 9));
      assert.ok(odd);
      assert.equal(up.count(), 1, 'a name that only looks like it is under home.arpa is not ours: it is forwarded');
      // Under home.arpa so it is answered locally, at once.
      await s.exchange(rawQuery(['a\n127.0.0.1:53 - 1 "a in forged.', 'home', 'arpa'], 1, 11));
      const deadline = Date.now() + 3000;
      let lines: string[] = [];
      while (Date.now() < deadline) {
        lines = s.logs.filter((l) => l.includes(' INFO [log] '));
        if (lines.length >= 3) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(lines.length, 3, lines.join('\n'));
      assert.ok(lines.some((l) => l.includes(' nas\\.home.arpa. udp ')), lines.join('\n'));
      assert.ok(lines.every((l) => !l.includes('\n')));
      assert.ok(lines.some((l) => l.includes(String.raw`"A IN a\010127\.0\.0\.1:53\032-\0321\032\"a\032in\032forged\..home.arpa. udp`)), lines.join('\n'));
    } finally {
      await s.stop();
      await up.stop();
    }
  });
});
