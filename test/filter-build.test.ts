// The filter's list build from a file's bytes: the byte path for the common lines must agree with parseLine on
// every line it takes, and a file read in 64 KiB pieces (lines across the pieces, CRLF, an over-long line, no final
// newline) must build the same tables in the worker, on this thread and from the same lines given inline.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LineKind, nameKeyOfBytes, newParsedLine, parseLine } from '../plugins/filter/listParser';
import { MAX_KEY, type NameTable } from '../plugins/filter/nameTable';
import { Source, buildFromFile, buildFromFileInline, forEachLine, type FetchLimits } from '../plugins/filter/sources';

const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');
const keyOf = (line: string): string | null => {
  const out = new Uint8Array(MAX_KEY);
  const b = bytes(line);
  const len = nameKeyOfBytes(b, 0, b.length, out);
  return len < 0 ? null : Buffer.from(out.subarray(0, len)).toString('latin1');
};
const keys = (t: NameTable): string[] => Array.from({ length: t.count }, (_, i) => t.keyAt(i));
const limits: FetchLimits = { timeoutMs: 10_000, maxBytes: 1 << 30, ca: undefined, maxPatterns: 100 };

describe('filter: building from bytes', () => {
  test('the byte path takes the common lines and agrees with parseLine on every line it takes', () => {
    const taken = ['ads.example.com', 'Ads.Example.COM', 'ads.example.com\r', '0.0.0.0 ads.example.com', '127.0.0.1 ads.example.com', '||ads.example.com^', '||ads.example.com^\r', 'a', '127.0.0.1', 'x_y-z.0.test', `${'a'.repeat(63)}.test`];
    const refused = [
      '',
      '# comment',
      '! adblock comment',
      'localhost',
      'LocalHost',
      '0.0.0.0',
      '0.0.0.0 localhost',
      '127.0.0.1 broadcasthost',
      '||localhost^',
      'ads.example.com.',
      '.ads.example.com',
      'ads..example.com',
      '*.ads.example.com',
      'ads*.example.com',
      '0.0.0.0  ads.example.com',
      '0.0.0.0\tads.example.com',
      '0.0.0.0 ads.example.com # why',
      '0.0.0.0 a.test b.test',
      ' ads.example.com',
      '||ads.example.com^$third-party',
      '||ads.example.com',
      '|ads.example.com^',
      '@@||ads.example.com^',
      '||*.ads.example.com^',
      '/^ad[0-9]+\\./',
      `${'a'.repeat(64)}.test`,
      `${'a.'.repeat(127)}ab`,
      'ads.exämple.com',
    ];
    const p = newParsedLine();
    for (const line of taken) {
      const k = keyOf(line);
      assert.notEqual(k, null, `taken: ${JSON.stringify(line)}`);
      assert.equal(parseLine(line, p), LineKind.Names, line);
      assert.deepEqual([k], p.names, line);
    }
    for (const line of refused) assert.equal(keyOf(line), null, `refused: ${JSON.stringify(line)}`);
    // Whatever it takes, parseLine reads the same way: random lines from the characters that matter.
    const chars = 'aZ0-_.|^ *\r#@$/';
    let seed = 7;
    const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
    for (let i = 0; i < 20_000; i++) {
      const prefix = ['', '0.0.0.0 ', '127.0.0.1 ', '||'][rnd(4)];
      let line = prefix;
      for (let j = rnd(12); j >= 0; j--) line += chars[rnd(chars.length)];
      const k = keyOf(line);
      if (k === null) continue;
      assert.equal(parseLine(line, p), LineKind.Names, JSON.stringify(line));
      assert.deepEqual([k], p.names, JSON.stringify(line));
    }
  });

  test('a file in 64 KiB pieces builds the same tables in the worker, on this thread and given inline', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'filter-build-'));
    try {
      const lines: string[] = ['# a list', '0.0.0.0 localhost', ''];
      for (let i = 0; i < 30_000; i++) {
        const name = `n${i}.${i % 7 === 0 ? 'Sub.' : ''}bulk${i % 13}.test`;
        lines.push(i % 4 === 0 ? `0.0.0.0 ${name}` : i % 4 === 1 ? `||${name}^\r` : i % 4 === 2 ? name : `127.0.0.1 ${name} x${i}.hosts.test`);
        if (i % 5000 === 0) lines.push('@@||n5.bulk5.test^', '*.wild.test', '/^re[0-9]+\\.test$/', 'not a list line at all');
      }
      lines.push('%'.repeat(200 * 1024), 'after.long.test', 'last.test');
      const file = path.join(dir, 'list.txt');
      fs.writeFileSync(file, lines.join('\n'), 'latin1');
      let seen = 0;
      await forEachLine(file, () => void seen++);
      // The over-long line is passed on cut: its first 200 bytes, then what follows as lines of their own.
      assert.ok(seen > lines.length, `${seen} lines`);
      const inWorker = await buildFromFile(file, 'list', 'block', 100);
      const here = await buildFromFileInline(file, 'list', 'block', 100);
      const inline = new Source('inline', 'block', { type: 'inline', lines }, dir);
      assert.ok(await inline.loadLocal(limits));
      for (const t of [inWorker, here]) {
        assert.deepEqual(keys(t.block), keys(inline.tables.block));
        assert.deepEqual(keys(t.allow), keys(inline.tables.allow));
        assert.deepEqual(t.blockPatterns.map((x) => x.source), inline.tables.blockPatterns.map((x) => x.source));
        assert.equal(t.names, inline.tables.names);
        assert.equal(t.badLines - inline.tables.badLines, seen - lines.length);
      }
      assert.ok(inWorker.block.count > 37_000 && inWorker.allow.count === 1, `${inWorker.block.count} / ${inWorker.allow.count}`);
      assert.ok(inWorker.block.hasName('n8.bulk8.test') && inWorker.block.hasName('x.wild.test') && inWorker.block.hasName('last.test'));
      assert.ok(!inWorker.block.hasName('localhost') && inWorker.allow.hasName('n5.bulk5.test'));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
