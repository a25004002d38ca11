// A plugin's name becomes its metrics' subsystem with characters Prometheus refuses mapped to `_`
// (`quiet-hours` → `codexdns_quiet_hours_…`); a metric name that is wrong anyway is an error naming it and the rule.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../testing';
import { ConfigError, formatIssue } from '../config/errors';
import { SHIM } from './helpers/codexdnsPackage';

const plugin = (name: string, metric: string): string => `'use strict';
const { definePlugin, Type } = require('codexdns');
module.exports = definePlugin({
  name: '${name}',
  options: Type.Object({}),
  setup(api) {
    const c = api.metrics.counter({ name: '${metric}', help: 'Queries seen.' });
    api.hooks.served.tap(api.name, () => c.inc());
  },
});
`;

const corefile = (file: string): string => `servers:
  - listen: [udp://127.0.0.1:0]
    plugins:
      - use: ./${file}
`;

test('a plugin named quiet-hours gets metrics named codexdns_quiet_hours_*', async () => {
  const s = await startServer(corefile('quiet-hours.js'), { files: { ...SHIM, 'quiet-hours.js': plugin('quiet-hours', 'seen_total') } });
  try {
    await s.query('example.org');
    const text = await s.server.metrics.registry.metrics();
    assert.match(text, /^codexdns_quiet_hours_seen_total 1$/m);
  } finally {
    await s.stop();
  }
});

test('a metric name Prometheus refuses is an error naming the metric and the rule', async () => {
  const err = await startServer(corefile('bad.js'), { files: { ...SHIM, 'bad.js': plugin('bad', 'seen total') } }).then(
    (s) => s.stop().then(() => null),
    (e: unknown) => e,
  );
  assert.ok(err instanceof Error, 'start-up fails');
  const text = err instanceof ConfigError ? err.issues.map(formatIssue).join('\n') : err.message;
  assert.match(text, /metric "codexdns_bad_seen total": a metric name may hold only letters, digits, _ and :/);
});
