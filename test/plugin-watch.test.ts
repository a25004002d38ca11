// Saving a custom plugin file (or a local file it requires) reloads it like an edit of Corefile.yaml; a save that
// does not load keeps the old chain serving.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startServer } from '../testing';
import { waitFor } from './helpers/net';
import { SHIM } from './helpers/codexdnsPackage';

const PLUGIN = `'use strict';
const { definePlugin, Type, DnsResponse } = require('codexdns');
const { address } = require('./lib/address');
module.exports = definePlugin({
  name: 'fixed',
  options: Type.Object({}),
  setup(api) {
    api.hooks.query.tap(api.name, (ctx) => {
      const q = ctx.message.questions[0];
      return DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [q], answers: [{ name: q.name, type: 'A', ttl: 1, data: address }] });
    });
  },
});
`;
const LIB = (a: string): string => `module.exports = { address: '${a}' };\n`;

test('a saved plugin file and a saved local import each reload the chain; a broken save keeps the old one', async () => {
  const s = await startServer(`servers:\n  - listen: [udp://127.0.0.1:0]\n    plugins:\n      - acl: {}\n      - use: ./plugins/fixed.js\nreload: { debounce: 100ms }\n`, {
    files: { ...SHIM, 'plugins/fixed.js': PLUGIN, 'plugins/lib/address.js': LIB('192.0.2.1') },
    watch: true,
  });
  const answer = async (): Promise<string | undefined> => ((await s.query('x.test')).answers?.[0] as { data?: string } | undefined)?.data;
  try {
    assert.equal(await answer(), '192.0.2.1');
    fs.writeFileSync(path.join(s.dir, 'plugins/lib/address.js'), LIB('192.0.2.2'));
    await waitFor('the import reloaded', async () => (await answer()) === '192.0.2.2', 10_000);
    fs.writeFileSync(path.join(s.dir, 'plugins/fixed.js'), PLUGIN.replace("ttl: 1", "ttl: 2"));
    await waitFor('the plugin reloaded', async () => ((await s.query('x.test')).answers?.[0] as { ttl?: number } | undefined)?.ttl === 2, 10_000);
    const failuresBefore = s.logs.filter((l) => /reload failed/.test(l)).length;
    fs.writeFileSync(path.join(s.dir, 'plugins/fixed.js'), PLUGIN.replace('const { address }', 'const { address } = ;\nconst x'));
    await waitFor('the broken save was tried', () => s.logs.filter((l) => /reload failed/.test(l)).length > failuresBefore, 10_000);
    assert.ok(s.logs.some((l) => /reload failed.*fixed\.js:3:\d+/.test(l)), 'the failure names the line in the plugin file');
    assert.equal(await answer(), '192.0.2.2', 'the old chain keeps serving');
    assert.ok(s.logs.some((l) => /plugin file changed; reloading/.test(l)));
  } finally {
    await s.stop();
  }
});
