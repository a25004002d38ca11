// What an editor sees: the JSON Schema `codexdns schema` prints accepts the shipped Corefiles and every README
// example (validated with ajv, as a YAML language server would), and YAML syntax errors carry their real position.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv from 'ajv';
import { parse } from 'yaml';
import { parseConfig } from '../config/load';
import { ConfigError, formatIssue } from '../config/errors';
import { configJsonSchema } from '../config/schemaExport';
import { builtinCatalog } from '../server/catalog';
import { Type } from '../config/types';
import { definePlugin } from '../core/plugin';
import { catalogWith } from './helpers/catalog';

const root = path.resolve(__dirname, '..', '..');

function markdownFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (e.name === 'node_modules' || e.name === 'dist' || e.name.startsWith('.')) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...markdownFiles(p));
    else if (e.name.endsWith('.md')) out.push(p);
  }
  return out;
}

/** The shipped Corefiles and every ```yaml block that is a whole configuration, in any Markdown file. */
function corefiles(): { name: string; text: string }[] {
  const out = ['Corefile.yaml', 'packaging/Corefile.yaml'].map((f) => ({ name: f, text: fs.readFileSync(path.join(root, f), 'utf8') }));
  for (const file of markdownFiles(root)) {
    const re = /```yaml\n([\s\S]*?)```/g;
    let m: RegExpExecArray | null;
    let i = 0;
    while ((m = re.exec(fs.readFileSync(file, 'utf8'))) !== null) {
      i++;
      if (/^servers:/m.test(m[1]) && !/\{[A-Z_]+\}/.test(m[1])) out.push({ name: `${path.relative(root, file)} example ${i}`, text: m[1] });
    }
  }
  return out;
}

describe('config: the exported JSON Schema', () => {
  const schema = configJsonSchema(builtinCatalog);
  const validate = new Ajv({ strict: false, allErrors: true }).compile(schema);

  for (const c of corefiles()) {
    test(`accepts ${c.name}`, () => {
      const ok = validate(parse(c.text));
      assert.ok(ok, `${c.name}: ${JSON.stringify(validate.errors?.slice(0, 5), null, 1)}`);
    });
  }

  test('marks nothing required that has a default, and still rejects what start-up rejects', () => {
    const walk = (s: Record<string, unknown>, at: string): void => {
      const props = s.properties as Record<string, Record<string, unknown>> | undefined;
      for (const r of (s.required as string[] | undefined) ?? []) assert.equal(props?.[r]?.default, undefined, `${at}.${r} has a default but is required`);
      for (const [k, v] of Object.entries(s)) {
        if (v !== null && typeof v === 'object') walk(v as Record<string, unknown>, `${at}.${k}`);
      }
    };
    walk(schema, '$');
    assert.equal(validate(parse('servers:\n  - listen: [udp://127.0.0.1:53]\n    plugins:\n      - cache: { capacity: "many" }\n')), false);
    assert.equal(validate(parse('servers:\n  - listen: [udp://127.0.0.1:53]\n    plugins:\n      - cache: { nonsense: 1 }\n')), false);
  });
});

describe('config: YAML syntax errors carry their line and column', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['a tab in the indentation', 'servers:\n  - listen: [udp://127.0.0.1:5353]\n\tplugins: []\n', /Corefile\.yaml:3:1 YAML: Tabs are not allowed/],
    ['a duplicate key', 'log: { level: info }\nlog: { level: debug }\n', /Corefile\.yaml:2:1 YAML: Map keys must be unique/],
    ['bad indentation', 'servers:\n  - listen: [udp://127.0.0.1:5353]\n   plugins: []\n', /Corefile\.yaml:3:\d+ YAML:/],
  ];
  for (const [what, text, expected] of cases) {
    test(what, async () => {
      const err = await parseConfig(text, '/tmp/Corefile.yaml', builtinCatalog).then(() => null, (e: unknown) => e);
      assert.ok(err instanceof ConfigError, String(err));
      const lines = err.issues.map(formatIssue);
      assert.ok(lines.some((l) => expected.test(l)), lines.join('\n'));
      assert.ok(!lines.some((l) => /:1:1 YAML/.test(l)) || /:1:1/.test(expected.source), `not every error at 1:1: ${lines.join('\n')}`);
    });
  }
});

describe('config: a schema can say what it wants in its own words', () => {
  test('errorMessage replaces the raw pattern (and an anyOf failure), at the option', async () => {
    const hours = definePlugin({
      name: 'quiet-hours',
      options: Type.Object({
        from: Type.String({ pattern: '^([01]\\d|2[0-3]):[0-5]\\d$', default: '22:00', errorMessage: 'a time of day such as 07:30 (00:00 to 23:59)' }),
        days: Type.Union([Type.Literal('weekdays'), Type.Literal('all')], { default: 'all', errorMessage: 'weekdays or all' }),
        plain: Type.String({ pattern: '^x+$', default: 'x' }),
      }),
      setup() {},
    });
    const catalog = catalogWith(hours);
    const err = await parseConfig('servers:\n  - listen: [udp://127.0.0.1:5353]\n    plugins:\n      - quiet-hours: { from: "25:00", days: sometimes, plain: y }\n', '/tmp/Corefile.yaml', catalog).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof ConfigError);
    const lines = err.issues.map(formatIssue);
    assert.ok(lines.some((l) => /:4:30 plugin quiet-hours: option from: a time of day such as 07:30 \(00:00 to 23:59\)$/.test(l)), lines.join('\n'));
    assert.ok(lines.some((l) => /option days: weekdays or all$/.test(l)), lines.join('\n'));
    assert.ok(lines.some((l) => /option plain: must match pattern/.test(l)), 'without errorMessage the schema error stays');
    assert.ok(!lines.some((l) => /option from: must match pattern/.test(l)), lines.join('\n'));
  });
});

describe('config: `codexdns schema FILE` includes the options of the custom plugins FILE names', () => {
  test('a custom plugin\'s options are checked by the exported schema; other use: entries take any options', async () => {
    const { spawnSync } = await import('node:child_process');
    const os = await import('node:os');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-schema-'));
    try {
      fs.writeFileSync(
        path.join(dir, 'quiet.js'),
        "module.exports = { name: 'quiet-hours', options: { type: 'object', properties: { from: { type: 'string', pattern: '^\\\\d\\\\d:\\\\d\\\\d$', default: '22:00' } }, additionalProperties: false }, setup() {} };\n",
      );
      const corefile = 'servers:\n  - listen: [udp://127.0.0.1:5353]\n    plugins:\n      - use: ./quiet.js\n        options: { from: "07:30" }\n';
      fs.writeFileSync(path.join(dir, 'Corefile.yaml'), corefile);
      const cli = path.resolve(__dirname, '..', 'cli', 'codexdns.js');
      const r = spawnSync(process.execPath, [cli, 'schema', path.join(dir, 'Corefile.yaml')], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const v = new Ajv({ strict: false, allErrors: true }).compile(JSON.parse(r.stdout) as object);
      assert.equal(v(parse(corefile)), true, JSON.stringify(v.errors));
      assert.equal(v(parse(corefile.replace('"07:30"', '"7 pm"'))), false, 'a bad value of the custom plugin is flagged');
      assert.equal(v(parse(corefile.replace('from: "07:30"', 'to: "07:30"'))), false, 'an unknown option of the custom plugin is flagged');
      assert.equal(v(parse(corefile.replace('./quiet.js', './other.js').replace('from: "07:30"', 'anything: 1'))), true, 'another use: takes any options');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
