'use strict';
/**
 * hosts: answers A, AAAA and PTR queries from a hosts file (`/etc/hosts` format), re-read when the file
 * changes, and hands every name it does not have to the rest of the chain (fallthrough).
 *
 *   - use: ./plugins/hosts/index.js
 *     options: { file: ./hosts.txt }
 *
 * What it shows: options with defaults and a Duration, a path relative to Corefile.yaml, a query tap that
 * answers or passes, a file watcher opened in `startup` and closed in `shutdown` (so a chain that is never
 * swapped in opens none), a debounce through `api.timers` (cancelled when the chain is replaced), metrics
 * and logging.
 */
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { definePlugin, Type, Duration, DnsResponse, Rcode, OptionError } = require('codexdns');

const TYPE_A = 1;
const TYPE_PTR = 12;
const TYPE_AAAA = 28;
const TYPE_ANY = 255;

/** `192.0.2.1` → `1.2.0.192.in-addr.arpa`; `2001:db8::1` → `1.0.0.0…8.b.d.0.1.0.0.2.ip6.arpa`. */
function reverseName(address) {
  if (net.isIPv4(address)) return `${address.split('.').reverse().join('.')}.in-addr.arpa`;
  return `${expandIPv6(address).split('').reverse().join('.')}.ip6.arpa`;
}

/** The 32 hex digits of an IPv6 address (handles `::` and a trailing dotted IPv4). */
function expandIPv6(address) {
  let a = address.toLowerCase();
  const v4 = a.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (v4) {
    const [b0, b1, b2, b3] = v4[1].split('.').map(Number);
    a = a.slice(0, -v4[1].length) + `${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const [head, tail] = a.includes('::') ? a.split('::') : [a, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return groups.map((g) => g.padStart(4, '0')).join('');
}

/** Text of a hosts file → { names: Map<name, { a: string[], aaaa: string[] }>, reverse: Map<ptrName, string[]>, entries }. */
function parseHosts(text) {
  const names = new Map();
  const reverse = new Map();
  let entries = 0;
  for (const raw of text.split('\n')) {
    const hash = raw.indexOf('#');
    const line = (hash === -1 ? raw : raw.slice(0, hash)).trim();
    if (line === '') continue;
    const fields = line.split(/\s+/);
    const address = fields[0].replace(/%.*$/, ''); // drop an IPv6 zone (fe80::1%eth0)
    const family = net.isIP(address);
    if (family === 0 || fields.length < 2) continue;
    const hostnames = fields.slice(1).map((n) => n.toLowerCase().replace(/\.$/, '')).filter((n) => n !== '');
    for (const name of hostnames) {
      let rec = names.get(name);
      if (!rec) names.set(name, (rec = { a: [], aaaa: [] }));
      const list = family === 4 ? rec.a : rec.aaaa;
      if (!list.includes(address)) list.push(address);
      entries++;
    }
    // PTR: the first name on the line is the canonical one, as in /etc/hosts.
    const ptr = reverseName(address);
    const targets = reverse.get(ptr) ?? [];
    for (const name of hostnames) if (!targets.includes(name)) targets.push(name);
    reverse.set(ptr, targets);
  }
  return { names, reverse, entries };
}

module.exports = definePlugin({
  name: 'hosts',
  description: 'Answers A, AAAA and PTR from a hosts file, re-read on change; other names go on down the chain',
  role: 'answers',
  options: Type.Object({
    file: Type.String({ minLength: 1, description: 'The hosts file (relative to Corefile.yaml)' }),
    ttl: Type.Integer({ minimum: 0, maximum: 86400, default: 3600, description: 'TTL of the answers' }),
    fallthrough: Type.Boolean({ default: true, description: 'Names not in the file go on down the chain (false: NXDOMAIN)' }),
    reverse: Type.Boolean({ default: true, description: 'Answer PTR queries for the addresses in the file' }),
    watch: Type.Boolean({ default: true, description: 'Re-read the file when it changes' }),
    debounce: Duration(200, 'Wait this long after the last change before re-reading'),
  }),

  setup(api, options) {
    const file = api.resolvePath(options.file);
    const entriesGauge = api.metrics.gauge({ name: 'entries', help: 'Name-to-address entries loaded from the hosts file' });
    const loads = api.metrics.counter({ name: 'loads_total', help: 'Hosts file reads, by result', labelNames: ['result'] });

    const read = () => parseHosts(fs.readFileSync(file, 'utf8'));
    let table;
    try {
      table = read();
    } catch (err) {
      // An OptionError names the option: the message points at `file:` in Corefile.yaml (line:col).
      throw new OptionError('file', `cannot read ${file}: ${err.code ?? err.message}`);
    }
    loads.inc({ result: 'ok' });
    entriesGauge.set(table.entries);
    api.log.info('hosts file loaded', { file, names: table.names.size });

    const reload = () => {
      try {
        table = read();
        loads.inc({ result: 'ok' });
        entriesGauge.set(table.entries);
        api.log.info('hosts file reloaded', { file, names: table.names.size });
      } catch (err) {
        // Keep answering from what we had; an editor may have the file half-written or moved away.
        loads.inc({ result: 'error' });
        api.log.warn('cannot re-read the hosts file; keeping the previous entries', { file, error: err.message });
      }
    };

    // Answer building: only on a hit do we decode the query (ctx.message) and build a message.
    const respond = (ctx, type, data) => {
      const question = ctx.message.questions[0];
      const answers = data.map((d) => ({ name: question.name, type, ttl: options.ttl, data: d }));
      const res = DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [question], answers });
      res.authoritative = true;
      return res;
    };

    api.hooks.query.tap(api.name, (ctx) => {
      const name = ctx.qname;
      const qtype = ctx.qtype;
      if (qtype === TYPE_PTR && options.reverse) {
        const targets = table.reverse.get(name);
        if (targets !== undefined) return respond(ctx, 'PTR', targets);
      }
      const rec = table.names.get(name);
      if (rec === undefined) return options.fallthrough ? undefined : ctx.reply(Rcode.NXDOMAIN);
      if (qtype === TYPE_A) return respond(ctx, 'A', rec.a);
      if (qtype === TYPE_AAAA) return respond(ctx, 'AAAA', rec.aaaa);
      if (qtype === TYPE_ANY) {
        const question = ctx.message.questions[0];
        const answers = [...rec.a.map((d) => ({ name: question.name, type: 'A', ttl: options.ttl, data: d })), ...rec.aaaa.map((d) => ({ name: question.name, type: 'AAAA', ttl: options.ttl, data: d }))];
        const res = DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [question], answers });
        res.authoritative = true;
        return res;
      }
      return respond(ctx, 'A', []); // the name exists, not with this type: NODATA
    });

    if (!options.watch) return;
    // The watcher belongs to the chain that serves: opened at startup (after the swap), closed at shutdown
    // (when a reload replaces this chain). We watch the folder, because editors often save by writing a new
    // file and renaming it over the old one, which a watch on the file itself would miss.
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
            reload();
          }, options.debounce);
        });
        watcher.on('error', (err) => api.log.warn('watching the hosts file failed', { error: err.message }));
      } catch (err) {
        api.log.warn('cannot watch the hosts file; edits need a reload', { file, error: err.message });
      }
    });
    api.hooks.shutdown.tap(api.name, () => {
      watcher?.close();
      watcher = null;
    });
  },
});

module.exports.parseHosts = parseHosts;
module.exports.reverseName = reverseName;
