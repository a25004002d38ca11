// Loaded first by the CLI, before anything allocates much: V8 settings for a long-running server.
import { setFlagsFromString } from 'node:v8';

// Allocation-site pretenuring: once V8 sees most objects from one allocation site survive young-generation
// collections, it allocates every later object from that site straight in the old generation. A DNS server's
// per-query objects (the parsed question, the dispatch context, a write batch's rows) live for microseconds,
// but a moment when they do not — tracking jobs held while the client index loads at start, a slow batch
// write — flips their sites for good, and from then on every query leaves garbage for the old generation's
// mark-compacts: in the storm benchmark 123 MB instead of 88 MB promoted in 30 s and a longer latency tail
// (bench/README.md, *Storm with discovery*). CODEXDNS_V8_PRETENURING=1 keeps V8's default.
if (process.env.CODEXDNS_V8_PRETENURING !== '1') setFlagsFromString('--no-allocation-site-pretenuring');
