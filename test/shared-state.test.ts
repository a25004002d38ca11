/**
 * `api.shared`: one value per plugin and key for a server's chains — every block, across reloads whatever the
 * options — disposed with the last chain that asked; a failed reload changes nothing; two servers never share.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startServer } from '../testing';

const distIndex = path.resolve(__dirname, '..', 'index.js');

/** Answers TXT with the id of the shared object and how many instances have used it; logs disposals. */
const sharer = `const { definePlugin, Type, DnsResponse } = require(${JSON.stringify(distIndex)});
const events = (globalThis.__sharedEvents ??= []);
module.exports = definePlugin({
  name: 'sharer',
  options: Type.Object({ tag: Type.String({ default: 'a' }), fail: Type.Boolean({ default: false }) }),
  setup(api, o) {
    const box = api.shared('box', () => ({ id: (globalThis.__sharedMade = (globalThis.__sharedMade ?? 0) + 1), users: 0 }), (b) => { events.push('dispose ' + b.id); });
    box.users++;
    if (o.fail) throw new Error('setup fails on purpose');
    api.hooks.query.tap('sharer', (ctx) => {
      const q = ctx.message.questions[0];
      return DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [q], answers: [{ name: q.name, type: 'TXT', ttl: 0, data: [o.tag + ':' + box.id + ':' + box.users] }] });
    });
  },
});
`;

const corefile = (blocks: Array<{ tag: string; fail?: boolean } | null>): string =>
  'servers:\n' +
  blocks
    .map((b, i) =>
      b === null
        ? `  - listen: [udp://127.0.0.1:0]\n    zones: ["z${i}."]\n    plugins:\n      - acl: { allow: [127.0.0.0/8] }\n`
        : `  - listen: [udp://127.0.0.1:0]\n    zones: ["z${i}."]\n    plugins:\n      - use: ./sharer.js\n        options: { tag: ${b.tag}${b.fail ? ', fail: true' : ''} }\n`,
    )
    .join('');

function txt(a: { answers?: unknown[] }): string {
  const r = (a.answers ?? []).find((x) => (x as { type: string }).type === 'TXT') as { data: Buffer[] } | undefined;
  return r ? Buffer.concat(r.data).toString() : '';
}

test('api.shared: one value for every block and reload of a plugin, kept through option changes, disposed with the last chain', async () => {
  const events: string[] = ((globalThis as { __sharedEvents?: string[] }).__sharedEvents ??= []);
  events.length = 0;
  const s = await startServer(corefile([{ tag: 'a' }, { tag: 'b' }]), { files: { 'sharer.js': sharer } });
  const other = await startServer(corefile([{ tag: 'x' }]), { files: { 'sharer.js': sharer } });
  try {
    // Both blocks (one listener, split by zone) hold the same object: made once, used by two instances.
    assert.equal(txt(await s.query('q.z0', 'TXT')), 'a:1:2');
    assert.equal(txt(await s.query('q.z1', 'TXT')), 'b:1:2');
    // Another server in the same process has its own.
    assert.equal(txt(await other.query('q.z0', 'TXT')), 'x:2:1');

    // New options in both blocks: new instances, the same shared object.
    fs.writeFileSync(s.configFile, corefile([{ tag: 'c' }, { tag: 'd' }]));
    assert.equal((await s.reload()).ok, true);
    assert.equal(txt(await s.query('q.z0', 'TXT')), 'c:1:4');
    assert.deepEqual(events, []);

    // A reload whose build fails keeps the old chains and the object.
    fs.writeFileSync(s.configFile, corefile([{ tag: 'e', fail: true }]));
    assert.equal((await s.reload()).ok, false);
    assert.equal(txt(await s.query('q.z0', 'TXT')), 'c:1:5');
    assert.deepEqual(events, []);

    // The plugin leaves every block: the object is disposed once the last chain that used it retires.
    fs.writeFileSync(s.configFile, corefile([null]));
    assert.equal((await s.reload()).ok, true);
    assert.deepEqual(events, ['dispose 1']);

    // Back again: a new object.
    fs.writeFileSync(s.configFile, corefile([{ tag: 'f' }]));
    assert.equal((await s.reload()).ok, true);
    assert.equal(txt(await s.query('q.z0', 'TXT')), 'f:3:1');
  } finally {
    await s.stop();
    await other.stop();
  }
  // Stopping the servers disposes what their chains held.
  assert.deepEqual(events.sort(), ['dispose 1', 'dispose 2', 'dispose 3']);
});
