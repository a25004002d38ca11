// "Node bare relay": the floor for a forwarder written in Node. It relays each client query to the upstream
// and the reply back, without decoding anything and without a cache.
//
// Default mode: ONE upstream socket (connected to the upstream) and an ID map: each query gets the next
// 16-bit ID (a counter, not random: this is a floor, not a secure forwarder), the slot remembers the client's
// ID and address, and the reply is matched by ID alone and sent back with the client's ID restored. This is
// cheaper than what a real forwarder must do (codexdns binds a fresh random source port per upstream query
// and checks source, ID and question), so it is a lower bound on the cost of a cache miss.
//
// `--socket-per-query`: a freshly bound socket (random source port) per upstream query, closed on the reply or
// after 2 s, to show what the per-query socket costs on its own (optional row `relay-fresh` of the harness).
//
// Usage: node dist/bench/relay.js --port PORT --upstream UPSTREAM_PORT [--socket-per-query]
import dgram from 'node:dgram';
import { exitOnSignalOrDeadline, parseArgs, portArg } from './common';

const args = parseArgs(process.argv.slice(2));
exitOnSignalOrDeadline(args);
const port = portArg(args, 'port');
const upstreamPort = portArg(args, 'upstream');
const perQuery = args.get('socket-per-query') === 'true';

const client = dgram.createSocket('udp4');
client.on('error', (err) => {
  console.error(`relay on ${port}: ${err.message}`);
  process.exit(1);
});

if (!perQuery) {
  interface Slot {
    id: number;
    port: number;
    address: string;
  }
  const slots: Array<Slot | undefined> = new Array<Slot | undefined>(65536).fill(undefined);
  let next = 0;
  const up = dgram.createSocket('udp4');
  up.on('message', (reply) => {
    if (reply.length < 12) return;
    const id = reply.readUInt16BE(0);
    const slot = slots[id];
    if (slot === undefined) return;
    slots[id] = undefined;
    reply.writeUInt16BE(slot.id, 0);
    client.send(reply, slot.port, slot.address);
  });
  up.on('error', (err) => console.error(`relay upstream socket: ${err.message}`));
  client.on('message', (msg, rinfo) => {
    if (msg.length < 12 || (msg[2]! & 0x80) !== 0) return;
    const id = next;
    next = (next + 1) & 0xffff;
    // A slot still in use 65,536 queries later was lost upstream: overwrite it.
    slots[id] = { id: msg.readUInt16BE(0), port: rinfo.port, address: rinfo.address };
    msg.writeUInt16BE(id, 0);
    up.send(msg);
  });
  up.connect(upstreamPort, '127.0.0.1', () => {
    client.bind(port, '127.0.0.1', () => console.log(`listening udp://127.0.0.1:${port} (one upstream socket)`));
  });
} else {
  client.on('message', (msg, rinfo) => {
    if (msg.length < 12 || (msg[2]! & 0x80) !== 0) return;
    const clientId = msg.readUInt16BE(0);
    const id = (Math.random() * 65536) | 0;
    msg.writeUInt16BE(id, 0);
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => s.close(), 2000);
    s.on('error', () => {
      clearTimeout(timer);
      s.close();
    });
    s.on('message', (reply) => {
      if (reply.length < 12 || reply.readUInt16BE(0) !== id) return;
      clearTimeout(timer);
      s.close();
      reply.writeUInt16BE(clientId, 0);
      client.send(reply, rinfo.port, rinfo.address);
    });
    s.send(msg, upstreamPort, '127.0.0.1');
  });
  client.bind(port, '127.0.0.1', () => console.log(`listening udp://127.0.0.1:${port} (socket per query)`));
}
