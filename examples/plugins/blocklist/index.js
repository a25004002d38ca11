'use strict';
/**
 * blocklist: answers NXDOMAIN (or 0.0.0.0 / ::) for every name of a list file and for all their subdomains.
 *
 *   - use: ./plugins/blocklist/index.js
 *     options: { file: ./blocklist.txt, action: nxdomain }
 *
 * The list is kept in a compact sorted table (table.js): a million names take ≈ 22 MB instead of the
 * ≈ 80–100 MB of a Set of strings, and a lookup is one binary search. The table is built in a worker thread,
 * so loading a big list never stalls the queries being answered meanwhile, and it is kept across reloads
 * of Corefile.yaml that leave this plugin's options (and the file) unchanged (`api.retain`).
 */
const fs = require('node:fs');
const path = require('node:path');
const { definePlugin, Type, Duration, DnsResponse, Rcode, OptionError } = require('codexdns');
const { buildInWorker } = require('./table');

/** RFC 8914 Extended DNS Error "Blocked": a client that shows EDE can tell a block from a missing name. */
const EDE_BLOCKED = { code: 15, text: 'blocked' };
const TYPE_A = 1;
const TYPE_AAAA = 28;

module.exports = definePlugin({
  name: 'blocklist',
  description: 'NXDOMAIN (or 0.0.0.0 / ::) for the names of a list file and their subdomains',
  // A guard: listed after `cache`, a name cached before it was blocked would still be served from the cache.
  role: 'guard',
  options: Type.Object({
    file: Type.String({ minLength: 1, description: 'The list: one name per line; hosts-file and ||name^ lines work too (relative to Corefile.yaml)' }),
    action: Type.Union([Type.Literal('nxdomain'), Type.Literal('null')], { default: 'nxdomain', description: 'nxdomain, or null: 0.0.0.0 for A, :: for AAAA, no records for other types' }),
    ttl: Type.Integer({ minimum: 0, default: 60, description: 'TTL of the 0.0.0.0 / :: answers' }),
    watch: Type.Boolean({ default: true, description: 'Rebuild the table when the file changes' }),
    debounce: Duration(1000, 'Wait this long after the last change before rebuilding'),
  }),

  async setup(api, options) {
    const file = api.resolvePath(options.file);
    const namesGauge = api.metrics.gauge({ name: 'names', help: 'Names in the blocklist table (after removing duplicates and names under a listed parent)' });
    const bytesGauge = api.metrics.gauge({ name: 'table_bytes', help: 'Memory held by the blocklist table' });
    const blocked = api.metrics.counter({ name: 'blocked_total', help: 'Queries answered as blocked' });
    const loads = api.metrics.counter({ name: 'loads_total', help: 'List file loads, by result', labelNames: ['result'] });

    // One holder per (block, options): a reload of Corefile.yaml that keeps our options gets the same holder
    // back, table included, and does not rebuild it unless the file itself changed.
    const state = api.retain('list', () => ({ table: null, stamp: '', loading: null, again: false }));

    const stampOf = () => {
      const st = fs.statSync(file);
      return `${st.mtimeMs}:${st.size}`;
    };

    /** Builds the table in a worker and swaps it in; one build at a time, a change during a build builds again. */
    const load = async (why) => {
      if (state.loading) {
        state.again = true;
        return state.loading;
      }
      state.loading = (async () => {
        do {
          state.again = false;
          const stamp = stampOf();
          const started = Date.now();
          const built = await buildInWorker(file);
          state.table = built.table;
          state.stamp = stamp;
          loads.inc({ result: 'ok' });
          namesGauge.set(built.table.count);
          bytesGauge.set(built.table.byteLength);
          api.log.info('blocklist loaded', { file, why, lines: built.lines, names: built.table.count, bytes: built.table.byteLength, ms: Date.now() - started });
        } while (state.again);
      })().finally(() => {
        state.loading = null;
      });
      return state.loading;
    };

    let stamp;
    try {
      stamp = stampOf();
    } catch (err) {
      throw new OptionError('file', `cannot read ${file}: ${err.code ?? err.message}`);
    }
    if (state.table === null || state.stamp !== stamp) {
      try {
        await load(state.table === null ? 'start' : 'file changed');
      } catch (err) {
        throw new OptionError('file', `cannot load ${file}: ${err.message}`);
      }
    } else {
      namesGauge.set(state.table.count);
      bytesGauge.set(state.table.byteLength);
    }

    const ttl = options.ttl;
    const nullAnswer = options.action === 'null';
    api.hooks.query.tap(api.name, (ctx) => {
      const table = state.table;
      if (table === null || !table.has(ctx.qname)) return undefined;
      blocked.inc();
      if (!nullAnswer) return ctx.reply(Rcode.NXDOMAIN, EDE_BLOCKED);
      const question = ctx.message.questions[0];
      const answers = ctx.qtype === TYPE_A ? [{ name: question.name, type: 'A', ttl, data: '0.0.0.0' }]
        : ctx.qtype === TYPE_AAAA ? [{ name: question.name, type: 'AAAA', ttl, data: '::' }] : [];
      const res = DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [question], answers });
      res.ede = EDE_BLOCKED;
      return res;
    });

    if (!options.watch) return;
    let watcher = null;
    let pending = null;
    api.hooks.startup.tap(api.name, () => {
      const base = path.basename(file);
      try {
        watcher = fs.watch(path.dirname(file), (_event, changed) => {
          if (changed !== null && changed !== base) return;
          if (pending !== null) api.timers.clear(pending);
          pending = api.timers.setTimeout(() => {
            pending = null;
            let now;
            try {
              now = stampOf();
            } catch {
              return; // moved away mid-save: the rename that follows brings us back
            }
            if (now === state.stamp) return;
            load('file changed').catch((err) => {
              loads.inc({ result: 'error' });
              api.log.warn('cannot rebuild the blocklist; keeping the previous one', { file, error: err.message });
            });
          }, options.debounce);
        });
        watcher.on('error', (err) => api.log.warn('watching the blocklist failed', { error: err.message }));
      } catch (err) {
        api.log.warn('cannot watch the blocklist; edits need a reload', { file, error: err.message });
      }
    });
    api.hooks.shutdown.tap(api.name, () => {
      watcher?.close();
      watcher = null;
    });
  },
});
