// Fallback authoritative upstream for the benchmark, used only when Debian's nsd cannot be started: answers
// any name with A 192.0.2.1 TTL 3600 and AA set, patching the ID and copying the question of a precomputed
// reply. Usage: node dist/bench/upstream.js --port PORT
import { exitOnSignalOrDeadline, parseArgs, portArg, startFixedResponder } from './common';

const args = parseArgs(process.argv.slice(2));
exitOnSignalOrDeadline(args);
startFixedResponder(portArg(args, 'port'), 0x85, 0x00); // QR|AA|RD, no RA
