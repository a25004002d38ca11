/**
 * What reloading an edited plugin costs in memory. Node cannot unload an ES module: each edit is imported under
 * a new URL and the old copy stays for the life of the process. A CommonJS module is dropped from require's
 * cache and collected. Measured over 50 edit-and-reload rounds (heap + external after a full GC); the figures
 * are reported in docs/writing-plugins.md ("What a reload costs").
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { startServer } from '../testing';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

function held(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

const distIndex = path.resolve(__dirname, '..', 'index.js');

/**
 * A plugin of realistic size (≈ 12 KB of source, like examples/plugins/hosts): 60 helper functions, all run
 * once at setup so their code is compiled, plus an answer tap.
 */
function pluginSource(flavour: 'esm' | 'cjs', round: number): string {
  const helpers = Array.from({ length: 60 }, (_, i) => `function helper${i}(x) {\n  const parts = String(x).split('.');\n  let h = ${i};\n  for (const p of parts) h = (h * 31 + p.length) | 0;\n  return { name: 'h${i}', value: h, text: parts.reverse().join('-') };\n}`).join('\n');
  const head = flavour === 'esm' ? `import codexdns from ${JSON.stringify(distIndex)};` : `const codexdns = require(${JSON.stringify(distIndex)});`;
  const tail = flavour === 'esm' ? 'export default plugin;' : 'module.exports = plugin;';
  return `${head}
const { definePlugin, Type, DnsResponse } = codexdns;
// edit ${round}${' '.repeat(round % 7)}
${helpers}
const HELPERS = [${Array.from({ length: 60 }, (_, i) => `helper${i}`).join(', ')}];
const plugin = definePlugin({
  name: 'heavy',
  options: Type.Object({ text: Type.String({ default: 'x' }) }),
  setup(api, options) {
    const warm = HELPERS.map((h) => h('a.b.c.' + options.text));
    api.hooks.query.tap('heavy', (ctx) => {
      if (ctx.qname !== 'heavy.test') return undefined;
      const q = ctx.message.questions[0];
      return DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [q], answers: [{ name: q.name, type: 'TXT', ttl: 0, data: ['round ${round} ' + warm.length] }] });
    });
  },
});
${tail}
`;
}

interface Measure {
  rounds: number;
  sourceBytes: number;
  growthMB: number;
  perReloadKB: number;
  rssGrowthMB: number;
}

async function measure(flavour: 'esm' | 'cjs', edit: boolean, rounds = 50): Promise<Measure> {
  const file = flavour === 'esm' ? 'heavy.mjs' : 'heavy.js';
  const s = await startServer(`servers:\n  - listen: [udp://127.0.0.1:0]\n    plugins:\n      - use: ./${file}\n`, { files: { [file]: pluginSource(flavour, 0) } });
  try {
    const round = async (i: number): Promise<void> => {
      if (edit) fs.writeFileSync(path.join(s.dir, file), pluginSource(flavour, i));
      const r = await s.reload();
      assert.equal(r.ok, true, r.error);
      const a = await s.query('heavy.test', 'TXT');
      const text = Buffer.concat((a.answers![0] as { data: Buffer[] }).data).toString();
      assert.equal(text, `round ${edit ? i : 0} 60`);
    };
    // Warm up: the first reloads allocate what every later one reuses (chains, metrics, Ajv, the loader).
    for (let i = 1; i <= 5; i++) await round(i);
    const before = held();
    const rssBefore = process.memoryUsage().rss;
    for (let i = 6; i < 6 + rounds; i++) await round(i);
    const growth = held() - before;
    return {
      rounds,
      sourceBytes: Buffer.byteLength(pluginSource(flavour, 0)),
      growthMB: +(growth / 1e6).toFixed(2),
      perReloadKB: +(growth / rounds / 1e3).toFixed(1),
      rssGrowthMB: +((process.memoryUsage().rss - rssBefore) / 1e6).toFixed(1),
    };
  } finally {
    await s.stop();
  }
}

let esmEdited: Measure;

test('an ES module plugin edited and reloaded 50 times: every copy stays in memory; an unchanged one costs nothing', async (t) => {
  esmEdited = await measure('esm', true);
  const esmSame = await measure('esm', false);
  t.diagnostic(`ESM edited: ${JSON.stringify(esmEdited)}`);
  t.diagnostic(`ESM not edited (50 reloads of an unchanged file): ${JSON.stringify(esmSame)}`);
  // Each edited ES module keeps its source, its compiled code and its module record.
  assert.ok(esmEdited.perReloadKB > 5, `ESM growth ${esmEdited.perReloadKB} KB per reload: did the loader stop importing afresh?`);
  assert.ok(esmEdited.perReloadKB < 1000, `ESM growth ${esmEdited.perReloadKB} KB per reload`);
  // Reloading an unchanged file imports nothing: its cost is that of any reload (≈ 0 once warm).
  assert.ok(esmSame.perReloadKB < esmEdited.perReloadKB / 3, `unchanged ESM: ${esmSame.perReloadKB} KB per reload`);
});

test('a CommonJS plugin edited and reloaded 50 times: its old copies are collected', {
}, async (t) => {
  const cjsEdited = await measure('cjs', true);
  t.diagnostic(`CJS edited: ${JSON.stringify(cjsEdited)} (ESM edited: ${esmEdited?.perReloadKB} KB per reload)`);
  assert.ok(cjsEdited.perReloadKB < 30, `CJS growth ${cjsEdited.perReloadKB} KB per reload`);
});
