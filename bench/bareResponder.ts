// Bare Node UDP responder: the floor for "Node + syscalls". Replies to every query with a fixed, precomputed
// A answer, patching only the ID and copying the question (no decode, no encode, no allocation beyond the
// reply buffer). Usage: node dist/bench/bareResponder.js --port PORT
import { exitOnSignalOrDeadline, parseArgs, portArg, startFixedResponder } from './common';

const args = parseArgs(process.argv.slice(2));
exitOnSignalOrDeadline(args);
startFixedResponder(portArg(args, 'port'), 0x81, 0x80); // QR|RD, RA
