import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { OptionError } from '../../config/errors';
import { Duration, Type } from '../../config/types';
import type { QueryContext } from '../../core/context';
import { definePlugin } from '../../core/plugin';
import { RepeatingWarning } from '../../core/primitives/rateLimitedLog';
import type { DnsResponse } from '../../core/response';
import { Flag } from '../../core/wire/constants';
import { classify, compileFormat, jsonFields, type QueryRecord, type ResponseClass } from './format';
import { FileSink, QueryBuffer, type LineSink } from './writer';

export { classify, compileFormat, COMMON_FORMAT, COMBINED_FORMAT, type QueryRecord } from './format';
export { QueryBuffer, FileSink } from './writer';

const ClassName = Type.Union([Type.Literal('all'), Type.Literal('denial'), Type.Literal('error'), Type.Literal('success')]);

export const LogPluginOptions = Type.Object({
  class: Type.Array(ClassName, {
    minItems: 1,
    default: ['all'],
    description: 'Which answers are logged: all, denial (NXDOMAIN, NODATA), error (SERVFAIL, REFUSED, … and dropped queries), success',
  }),
  sample: Type.Number({ exclusiveMinimum: 0, maximum: 1, default: 1, description: 'Share of the matching queries logged: 0.1 = one in ten (deterministic)' }),
  format: Type.String({ minLength: 1, default: '{common}', description: 'Line format (text): {common}, {combined} or placeholders like {remote} {name} {rcode} {duration}' }),
  output: Type.String({ minLength: 1, default: 'log', description: '`log` (the server log on stderr, journald under systemd) or a file path (appended; relative to the configuration folder)' }),
  json: Type.Optional(Type.Boolean({ description: 'JSON lines; absent: follow the server\'s `log.format`' })),
  flush: Duration(1000, 'Write the buffered lines at least this often'),
  batch: Type.Integer({ minimum: 1, maximum: 100_000, default: 512, description: 'Lines per write; a write starts as soon as this many wait' }),
  buffer: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 10_000, description: 'Lines held at most while waiting to be written; beyond it lines are dropped and counted' }),
});

type Opts = typeof LogPluginOptions.static;

/** Rcode, answer count and SOA presence of the response (its layout is already computed by the writer). */
function responseClass(res: DnsResponse): ResponseClass {
  if (res.dropped) return 'error';
  const layout = res.layout;
  if (layout === null) return 'error';
  return classify(res.rcode, layout.answerCount, layout.soaNegativeTtl !== -1);
}

/**
 * `log`: one line per query (CoreDNS's format), written off the answer path. The `served` tap only copies a
 * few numbers into a bounded buffer; a timer (or a full batch) formats and writes them in batches.
 */
export default definePlugin({
  name: 'log',
  description: 'Writes a line per query (CoreDNS format), sampled and filtered by class, in batches off the answer path',
  options: LogPluginOptions,
  setup(api, o: Opts) {
    let format: (r: QueryRecord) => string;
    try {
      format = compileFormat(o.format);
    } catch (err) {
      throw new OptionError('format', (err as Error).message);
    }
    const server = api.log.options;
    const json = o.json ?? server.format === 'json';
    const toLog = o.output === 'log' || o.output === 'stderr';

    const classes = new Set<string>(o.class);
    const all = classes.has('all');
    const wants = { success: all || classes.has('success'), denial: all || classes.has('denial'), error: all || classes.has('error') };

    let sink: LineSink;
    let file: string | undefined;
    if (toLog) {
      if (server.level === 'warn' || server.level === 'error') {
        api.log.warn(`query lines are written at level info, but log.level is ${server.level}: they will not appear (raise log.level or set output to a file)`);
      }
      const log = api.log;
      sink = {
        write: json
          ? (records) => {
              for (const r of records) log.info('query', jsonFields(r));
            }
          : (records) => {
              for (const r of records) log.info(format(r));
            },
        close: () => undefined,
      };
    } else {
      file = api.resolvePath(o.output);
      try {
        fs.mkdirSync(path.dirname(file), { recursive: true });
        FileSink.check(file);
        sink = new FileSink(
          file,
          json
            ? (records) => {
                let out = '';
                // The logger's key order: time, level, plugin, msg, then the fields.
                for (const r of records) out += JSON.stringify({ time: '', level: 'info', plugin: 'log', msg: 'query', ...jsonFields(r) }) + '\n';
                return out;
              }
            : (records) => {
                let out = '';
                for (const r of records) out += `${new Date(r.time).toISOString()} ${format(r)}\n`;
                return out;
              },
        );
      } catch (err) {
        throw new OptionError('output', `cannot open ${file}: ${(err as Error).message}`);
      }
    }

    const writeErrors = new RepeatingWarning({
      intervalMs: 10_000,
      emit: (count) => api.log.warn('cannot write query lines; they are dropped', { failures: count, file, error: lastWriteError }),
    });
    let lastWriteError = '';
    const buffer = new QueryBuffer({
      capacity: o.buffer,
      batch: o.batch,
      sink,
      onWriteError: (err) => {
        lastWriteError = err instanceof Error ? err.message : String(err);
        writeErrors.hit();
      },
    });

    // Metrics: plain numbers on the answer path; prom-client is touched only by the flush timer and scrapes.
    const labels = api.block.name;
    const written = api.metrics.counter({ name: 'lines_total', help: 'Query lines written', labelNames: ['server'] as const }).labels(labels);
    const dropped = api.metrics.counter({ name: 'dropped_lines_total', help: 'Query lines dropped (buffer full, write failed)', labelNames: ['server', 'reason'] as const });
    const droppedFull = dropped.labels(labels, 'buffer_full');
    const droppedWrite = dropped.labels(labels, 'write_failed');
    const sampledOut = api.metrics.counter({ name: 'sampled_out_total', help: 'Queries of the logged classes not logged because of `sample`', labelNames: ['server'] as const }).labels(labels);
    const depthFn = (): number => buffer.depth;
    // Buffer depth by server block, for the one `buffered_lines` gauge of the server (a reload replaces a block's entry).
    const depthOf = api.shared('depths', () => new Map<string, () => number>());
    depthOf.set(labels, depthFn);
    api.metrics.mirrorGauge({
      name: 'buffered_lines',
      help: 'Query lines waiting to be written',
      labelNames: ['server'] as const,
      reset: true,
      levels: () => [...depthOf].map(([server, depth]) => ({ labels: { server }, value: depth() })),
    });
    // A full buffer can drop a line per query: say so at most once per 10 s, with the count.
    let lastFullWarning = -Infinity;
    let fullSinceWarning = 0;
    const reported = { written: 0, full: 0, write: 0, sampledOut: 0 };
    let skipped = 0;
    const report = (): void => {
      const s = buffer.stats;
      if (s.written > reported.written) written.inc(s.written - reported.written);
      if (s.droppedFull > reported.full) {
        droppedFull.inc(s.droppedFull - reported.full);
        fullSinceWarning += s.droppedFull - reported.full;
      }
      const now = performance.now();
      if (fullSinceWarning > 0 && (now - lastFullWarning >= 10_000 || !open)) {
        api.log.warn('query log buffer full, dropping lines', { dropped: fullSinceWarning, buffer: o.buffer });
        lastFullWarning = now;
        fullSinceWarning = 0;
      }
      if (s.droppedWrite > reported.write) droppedWrite.inc(s.droppedWrite - reported.write);
      if (skipped > reported.sampledOut) sampledOut.inc(skipped - reported.sampledOut);
      reported.written = s.written;
      reported.full = s.droppedFull;
      reported.write = s.droppedWrite;
      reported.sampledOut = skipped;
    };

    // Sampling: deterministic, one in 1/sample of the queries that pass `class` (the first one is logged).
    const sample = o.sample;
    let credit = 1 - sample;
    let open = true;

    api.hooks.served.tap('log', (ctx: QueryContext, res: DnsResponse) => {
      if (!open) return;
      if (!all) {
        const c = responseClass(res);
        if (!wants[c]) return;
      }
      if (sample < 1) {
        credit += sample;
        if (credit < 1 - 1e-9) {
          skipped++;
          return;
        }
        credit -= 1;
      }
      const i = buffer.reserve();
      if (i === -1) return;
      const wire = res.dropped ? null : res.wire;
      const q = ctx.query;
      // The reply's header as the writer builds it (core/wire/finalize.ts): the client's RD and CD, our RA.
      let flags = 0;
      if (wire !== null) {
        flags = Flag.QR | (q.flags & (Flag.RD | Flag.CD)) | Flag.RA | (wire.readUInt16BE(2) & (Flag.AD | Flag.TC));
        if (res.authoritative) flags |= Flag.AA;
      }
      const out = ctx;
      if (out.replyFlags !== undefined) flags = out.replyFlags;
      // Numbers and references to strings that already exist: no allocation per query.
      const c = buffer.cols;
      c.time[i] = Date.now();
      c.remote[i] = ctx.client.address;
      c.port[i] = ctx.client.port;
      c.id[i] = q.id;
      c.qtype[i] = q.qtype;
      c.qclass[i] = q.qclass;
      c.wireKey[i] = q.wireKey;
      c.tcp[i] = ctx.client.transport === 'tcp' ? 1 : 0;
      c.size[i] = ctx.raw.length;
      c.dnssecOk[i] = ctx.client.dnssecOk ? 1 : 0;
      c.ednsSize[i] = ctx.client.ednsSize;
      c.rcode[i] = wire === null ? -1 : res.rcode;
      c.flags[i] = flags;
      c.rsize[i] = wire === null ? 0 : out.replySize ?? wire.length;
      c.duration[i] = (performance.now() - ctx.startedAt) / 1000;
      c.server[i] = ctx.server;
      c.plugin[i] = res.plugin;
    });

    api.timers.setInterval(() => {
      void buffer.flush().then(report);
    }, Math.max(10, o.flush));

    api.hooks.shutdown.tapPromise('log', async () => {
      open = false;
      await buffer.close();
      report();
      writeErrors.flush();
      if (depthOf.get(labels) === depthFn) depthOf.delete(labels);
    });
  },
});
