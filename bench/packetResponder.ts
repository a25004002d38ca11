// "Node + dns-packet" responder: decodes every query with dns-packet and encodes a fresh answer, the cost
// a server pays when it re-encodes on every hit. Usage: node dist/bench/packetResponder.js --port PORT
import dgram from 'node:dgram';
import * as dnsPacket from 'dns-packet';
import { BENCH_ADDRESS, BENCH_TTL, exitOnSignalOrDeadline, parseArgs, portArg } from './common';

const args = parseArgs(process.argv.slice(2));
exitOnSignalOrDeadline(args);
const port = portArg(args, 'port');
const address = BENCH_ADDRESS.join('.');
const sock = dgram.createSocket('udp4');
sock.on('message', (msg, rinfo) => {
  let q: dnsPacket.DecodedPacket;
  try {
    q = dnsPacket.decode(msg);
  } catch {
    return;
  }
  const question = q.questions?.[0];
  if (q.type !== 'query' || question === undefined) return;
  const out = dnsPacket.encode({
    id: q.id ?? 0,
    type: 'response',
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: [question],
    answers: [{ type: 'A', class: 'IN', name: question.name, ttl: BENCH_TTL, data: address }],
  });
  sock.send(out, rinfo.port, rinfo.address);
});
sock.on('error', (err) => {
  console.error(`packetResponder on ${port}: ${err.message}`);
  process.exit(1);
});
sock.bind(port, '127.0.0.1', () => console.log(`listening udp://127.0.0.1:${port}`));
