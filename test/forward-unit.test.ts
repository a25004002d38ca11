/** forward's pieces on their own: resolv.conf, addresses, policies, wire building and reply matching, RFC 6303 zones. */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import * as dnsPacket from 'dns-packet';
import { parseResolvConf, readResolvConf } from '../plugins/pkg/resolvconf';
import { parseUpstream } from '../plugins/forward/upstream';
import { createPolicy } from '../plugins/forward/policy';
import { buildQuery, mismatch, nextId, questionEndOf } from '../plugins/forward/exchange';
import { FlightTable, questionHash } from '../plugins/forward/flightTable';
import { encodeName } from '../core/wire/names';
import { localAnswer, maybePrivate, privateZoneOf, PRIVATE_ZONES } from '../plugins/forward/private';
import { parseQuery, type ParsedQuery } from '../core/wire/query';

const FIXTURES = path.resolve(__dirname, '../../test/fixtures/forward');
const fixture = (name: string): string => path.join(FIXTURES, name);

describe('forward: resolv.conf', () => {
  test('nameserver lines in order; comments, options and search ignored', () => {
    assert.deepEqual(readResolvConf(fixture('resolv.conf'), fixture('systemd-resolv.conf')).servers, ['192.0.2.53', '2001:db8::53', 'fe80::1%eth0']);
    assert.deepEqual(parseResolvConf('nameserver\t10.0.0.1 \n  nameserver 10.0.0.2 # home\n#nameserver 10.0.0.3\n'), ['10.0.0.1', '10.0.0.2']);
  });

  test('a file naming only 127.0.0.53 is replaced by systemd-resolved\'s real upstreams', () => {
    const r = readResolvConf(fixture('stub-resolv.conf'), fixture('systemd-resolv.conf'));
    assert.deepEqual(r.servers, ['192.168.1.1', '9.9.9.9']);
    assert.equal(r.file, fixture('systemd-resolv.conf'));
    assert.equal(r.warning, undefined);
  });

  test('the stub is kept (with a warning) when the systemd file is missing or empty', () => {
    const missing = readResolvConf(fixture('stub-resolv.conf'), fixture('no-such-file.conf'));
    assert.deepEqual(missing.servers, ['127.0.0.53']);
    assert.match(missing.warning ?? '', /127\.0\.0\.53/);
    const empty = readResolvConf(fixture('stub-resolv.conf'), fixture('empty.conf'));
    assert.deepEqual(empty.servers, ['127.0.0.53']);
    assert.match(empty.warning ?? '', /no other nameserver/);
  });

  test('127.0.0.53 beside another nameserver is left alone', () => {
    assert.deepEqual(parseResolvConf('nameserver 127.0.0.53\nnameserver 10.0.0.1\n'), ['127.0.0.53', '10.0.0.1']);
  });

  test('an unreadable file throws; a file without nameservers gives none', () => {
    assert.throws(() => readResolvConf(fixture('no-such-file.conf')));
    assert.deepEqual(readResolvConf(fixture('empty.conf')).servers, []);
  });
});

describe('forward: upstream addresses', () => {
  test('IP, IP:port, IPv6, [IPv6]:port, dns://', () => {
    const ok = (s: string) => {
      const a = parseUpstream(s);
      assert.notEqual(typeof a, 'string', String(a));
      return a as Exclude<ReturnType<typeof parseUpstream>, string>;
    };
    assert.deepEqual(ok('192.0.2.1'), { host: '192.0.2.1', port: 53, family: 4, label: '192.0.2.1:53' });
    assert.equal(ok('192.0.2.1:5353').port, 5353);
    assert.equal(ok('2001:DB8::1').label, '[2001:db8::1]:53');
    assert.deepEqual(ok('[2001:db8::1]:5300'), { host: '2001:db8::1', port: 5300, family: 6, label: '[2001:db8::1]:5300' });
    assert.equal(ok('dns://9.9.9.9').label, '9.9.9.9:53');
    assert.equal(ok('fe80::1%eth0').family, 6);
  });

  test('names, wildcards and bad ports are refused', () => {
    for (const bad of ['dns.google', '1.2.3', '192.0.2.1:0', '192.0.2.1:70000', '0.0.0.0', '[::]:53', '[192.0.2.1]:53', 'tls://1.1.1.1']) {
      assert.equal(typeof parseUpstream(bad), 'string', bad);
    }
  });
});

describe('forward: policies', () => {
  test('sequential, round_robin, random', () => {
    assert.deepEqual(createPolicy('sequential').order(3), [0, 1, 2]);
    const rr = createPolicy('round_robin');
    assert.deepEqual([rr.order(3), rr.order(3), rr.order(3), rr.order(3)], [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]);
    const random = createPolicy('random');
    const firsts = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const o = random.order(4);
      assert.deepEqual([...o].sort(), [0, 1, 2, 3]);
      firsts.add(o[0]);
    }
    assert.equal(firsts.size, 4, 'every upstream comes first sometimes');
  });
});

function parsed(raw: Buffer): ParsedQuery {
  const q = parseQuery(raw);
  assert.equal(q.kind, 'query');
  return q as ParsedQuery;
}

describe('forward: wire', () => {
  test('the upstream query: RD=1, client CD, lower-cased question, OPT with our size and the client DO', () => {
    const client = dnsPacket.encode({ type: 'query', id: 7, flags: dnsPacket.CHECKING_DISABLED, questions: [{ name: 'WwW.Example.COM', type: 'AAAA', class: 'IN' }] });
    const q = parsed(client);
    const out = buildQuery(q.wireKey, q.qtype, q.qclass, true, true, 1232);
    out.writeUInt16BE(0x1234, 0);
    const d = dnsPacket.decode(out) as dnsPacket.Packet & { flag_rd: boolean; flag_cd: boolean };
    assert.equal(d.id, 0x1234);
    assert.equal(d.flag_rd, true);
    assert.equal(d.flag_cd, true);
    assert.deepEqual(d.questions, [{ name: 'www.example.com', type: 'AAAA', class: 'IN' }]);
    const opt = d.additionals?.[0] as unknown as { type: string; udpPayloadSize: number; flags: number };
    assert.equal(opt.type, 'OPT');
    assert.equal(opt.udpPayloadSize, 1232);
    assert.equal(opt.flags & dnsPacket.DNSSEC_OK, dnsPacket.DNSSEC_OK);
    const plain = dnsPacket.decode(buildQuery(q.wireKey, q.qtype, q.qclass, false, false, 1400)) as dnsPacket.Packet & { flag_cd: boolean };
    assert.equal(plain.flag_cd, false);
    assert.equal(((plain.additionals?.[0] as unknown as { flags: number }).flags ?? 0) & dnsPacket.DNSSEC_OK, 0);
  });

  test('a type whose bytes look like ASCII letters is not folded (HTTPS = 65)', () => {
    const raw = dnsPacket.encode({ type: 'query', id: 1, questions: [{ name: 'a.example', type: 'A', class: 'IN' }] });
    raw.writeUInt16BE(65, raw.length - 4);
    const q = parsed(raw);
    const out = buildQuery(q.wireKey, q.qtype, q.qclass, false, false, 1232);
    assert.equal(out.readUInt16BE(questionEndOf(out) - 4), 65);
  });

  test('a reply must match ID and question (case-insensitive name, exact type and class), and be a response', () => {
    const q = parsed(dnsPacket.encode({ type: 'query', id: 1, questions: [{ name: 'example.com', type: 'A', class: 'IN' }] }));
    const query = buildQuery(q.wireKey, q.qtype, q.qclass, false, false, 1232);
    query.writeUInt16BE(4242, 0);
    const qEnd = questionEndOf(query);
    const reply = (id: number, name: string, type: dnsPacket.RecordType = 'A', response = true) =>
      dnsPacket.encode({ type: response ? 'response' : 'query', id, questions: [{ name, type, class: 'IN' }], answers: [] });
    assert.equal(mismatch(reply(4242, 'example.com'), query, qEnd), undefined);
    assert.equal(mismatch(reply(4242, 'ExAmPlE.CoM'), query, qEnd), undefined, '0x20 echo accepted');
    assert.equal(mismatch(reply(4243, 'example.com'), query, qEnd), 'id');
    assert.equal(mismatch(reply(4242, 'example.net'), query, qEnd), 'question');
    assert.equal(mismatch(reply(4242, 'example.com', 'AAAA'), query, qEnd), 'question');
    assert.equal(mismatch(reply(4242, 'example.com', 'A', false), query, qEnd), 'not_response');
    assert.equal(mismatch(reply(4242, 'example.com').subarray(0, 20), query, qEnd), 'short');
  });

  test('IDs are spread over the 16-bit space', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 20000; i++) {
      const id = nextId();
      assert.ok(id >= 0 && id <= 0xffff);
      seen.add(id);
    }
    // 20,000 draws from 65,536 values leave about 17,000 distinct; a counter or a bad generator would not.
    assert.ok(seen.size > 15000 && seen.size < 19000, `${seen.size} distinct`);
  });
});

describe('forward: RFC 6303 zones', () => {
  test('private reverse names and home.arpa are found; public ones are not', () => {
    assert.equal(privateZoneOf('1.1.168.192.in-addr.arpa'), '168.192.in-addr.arpa');
    assert.equal(privateZoneOf('5.0.0.10.in-addr.arpa'), '10.in-addr.arpa');
    assert.equal(privateZoneOf('1.0.20.172.in-addr.arpa'), '20.172.in-addr.arpa');
    assert.equal(privateZoneOf('1.0.32.172.in-addr.arpa'), undefined);
    assert.equal(privateZoneOf('1.0.64.100.in-addr.arpa'), '64.100.in-addr.arpa');
    assert.equal(privateZoneOf('8.8.8.8.in-addr.arpa'), undefined);
    assert.equal(privateZoneOf('nas.home.arpa'), 'home.arpa');
    assert.equal(privateZoneOf('home.arpa'), 'home.arpa');
    assert.equal(privateZoneOf('1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa'), `1.${Array(31).fill('0').join('.')}.ip6.arpa`);
    assert.equal(privateZoneOf('1.2.3.4.5.6.7.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.e.f.ip6.arpa'), '8.e.f.ip6.arpa');
    assert.equal(privateZoneOf('example.com'), undefined);
    assert.ok(PRIVATE_ZONES.includes('d.f.ip6.arpa'));
    const key = (name: string) => parsed(dnsPacket.encode({ type: 'query', id: 1, questions: [{ name, type: 'PTR', class: 'IN' }] })).wireKey;
    assert.equal(maybePrivate(key('1.1.168.192.IN-ADDR.ARPA')), true);
    assert.equal(maybePrivate(key('example.com')), false);
  });

  test('the local answer: NXDOMAIN + SOA below the apex, SOA/NODATA at the apex, question bytes kept', () => {
    const raw = dnsPacket.encode({ type: 'query', id: 99, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: '4.3.168.192.In-Addr.Arpa', type: 'PTR', class: 'IN' }] });
    const q = parsed(raw);
    const out = localAnswer(raw, q.id, q.flags, q.questionEnd, '4.3.168.192.in-addr.arpa', '168.192.in-addr.arpa', q.qtype);
    const d = dnsPacket.decode(out) as unknown as dnsPacket.Packet & { rcode: string };
    assert.equal(d.rcode, 'NXDOMAIN');
    assert.equal(d.id, 99);
    assert.equal(d.questions?.[0].name, '4.3.168.192.In-Addr.Arpa');
    assert.equal(d.answers?.length, 0);
    const soa = d.authorities?.[0] as dnsPacket.Answer & { data: { mname: string; rname: string; minimum: number } };
    assert.equal(soa.type, 'SOA');
    assert.equal(soa.name, '168.192.in-addr.arpa');
    assert.equal(soa.data.rname, 'nobody.invalid');
    assert.equal(soa.data.minimum, 10800);

    const apexRaw = dnsPacket.encode({ type: 'query', id: 5, questions: [{ name: 'home.arpa', type: 'SOA', class: 'IN' }] });
    const aq = parsed(apexRaw);
    const apex = dnsPacket.decode(localAnswer(apexRaw, aq.id, aq.flags, aq.questionEnd, 'home.arpa', 'home.arpa', aq.qtype)) as unknown as dnsPacket.Packet & { rcode: string };
    assert.equal(apex.rcode, 'NOERROR');
    assert.equal(apex.answers?.[0].type, 'SOA');
    const nodataRaw = dnsPacket.encode({ type: 'query', id: 5, questions: [{ name: 'home.arpa', type: 'A', class: 'IN' }] });
    const nq = parsed(nodataRaw);
    const nodata = dnsPacket.decode(localAnswer(nodataRaw, nq.id, nq.flags, nq.questionEnd, 'home.arpa', 'home.arpa', nq.qtype)) as unknown as dnsPacket.Packet & { rcode: string };
    assert.equal(nodata.rcode, 'NOERROR');
    assert.equal(nodata.answers?.length, 0);
    assert.equal(nodata.authorities?.[0].type, 'SOA');
  });
});

describe('forward: the table of questions in flight', () => {
  interface F { hash: number; bits: number; query: Buffer; qEnd: number; name: string }
  const flight = (name: string, type = 'A', bits = 0, hash?: number): F => {
    const query = buildQuery(encodeName(name.toLowerCase()).toString('latin1'), type === 'AAAA' ? 28 : 1, 1, false, false, 1232);
    const qEnd = questionEndOf(query);
    return { hash: hash ?? questionHash(query, qEnd, bits), bits, query, qEnd, name };
  };
  const asked = (name: string, type = 'A'): Buffer => dnsPacket.encode({ type: 'query', id: 7, questions: [{ name, type: type as dnsPacket.RecordType, class: 'IN' }] });
  const find = (t: FlightTable<F>, name: string, type = 'A', bits = 0, hash?: number): string | undefined => {
    const raw = asked(name, type);
    const end = raw.length;
    return t.find(hash ?? questionHash(raw, end, bits), raw, end, bits)?.name;
  };

  test('found by the client question in any letter case; type, class and bits tell questions apart', () => {
    const t = new FlightTable<F>(10);
    t.add(flight('www.example.com'));
    t.add(flight('www.example.com', 'AAAA'));
    t.add(flight('www.example.com', 'A', 1));
    assert.equal(find(t, 'WWW.Example.COM'), 'www.example.com');
    assert.equal(find(t, 'www.example.com', 'AAAA'), 'www.example.com');
    assert.equal(find(t, 'www.example.co'), undefined);
    assert.equal(find(t, 'www.example.com', 'A', 4), undefined);
    assert.equal(t.size, 3);
  });

  test('equal hashes of different questions are told apart, and a removal keeps the others findable', () => {
    const t = new FlightTable<F>(4);
    const names = ['a.test', 'b.test', 'c.test', 'd.test'];
    const fs = names.map((n) => flight(n, 'A', 0, 42));
    for (const f of fs) t.add(f);
    for (const n of names) assert.equal(find(t, n, 'A', 0, 42), n);
    t.remove(fs[1]);
    t.remove(fs[1]);
    assert.equal(t.size, 3);
    assert.equal(find(t, 'b.test', 'A', 0, 42), undefined);
    for (const n of ['a.test', 'c.test', 'd.test']) assert.equal(find(t, n, 'A', 0, 42), n);
    assert.deepEqual(t.values().map((f) => f.name).sort(), ['a.test', 'c.test', 'd.test']);
    t.clear();
    assert.equal(t.size, 0);
    assert.equal(find(t, 'a.test', 'A', 0, 42), undefined);
  });
});
