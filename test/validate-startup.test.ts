// `codexdns validate` runs start-up's checks without binding anything: every option a plugin's setup would refuse
// is reported by validate too, at the same FILE:LINE:COL, with the same words.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startServer } from '../testing';
import { ConfigError, formatIssue } from '../config/errors';

const CLI = path.resolve(__dirname, '..', 'cli', 'codexdns.js');

const block = (plugins: string): string => `servers:\n  - listen: [udp://127.0.0.1:0]\n    plugins:\n${plugins}`;

const cases: Array<[string, string, RegExp]> = [
  ['acl: a word where a network goes', block('      - acl: { allow: [banana] }\n      - forward: { to: [127.0.0.1:5399] }\n'), /:4:24 plugin acl: option allow\[0\]: banana is not a CIDR network or an address/],
  ['acl: a prefix longer than 32 bits', block('      - acl: { allow: [127.0.0.0/8], deny: [10.0.0.0/33] }\n      - forward: { to: [127.0.0.1:5399] }\n'), /plugin acl: option deny\[0\]: 10\.0\.0\.0\/33 is not a CIDR network/],
  ['ratelimit: a bad network in the allow list', block('      - acl: {}\n      - ratelimit: { queries: { rate: 10, burst: 20, allow: [127.0.0.1, not-a-net] } }\n      - forward: { to: [127.0.0.1:5399] }\n'), /plugin ratelimit: option queries\.allow\[1\]: not-a-net is not a CIDR network or an address/],
  ['forward: a port out of range', block('      - acl: {}\n      - forward: { to: [127.0.0.1:5399, "127.0.0.1:99999"] }\n'), /:5:41 plugin forward: option to\[1\]: 127\.0\.0\.1:99999: port 99999 out of range/],
  ['forward: a host name', block('      - acl: {}\n      - forward: { to: [dns.example] }\n'), /plugin forward: option to\[0\]: dns\.example: not an IP address/],
  ['forward: a resolv.conf that is not there', block('      - acl: {}\n      - forward: { to: [./missing-resolv.conf] }\n'), /plugin forward: option to\[0\]: cannot read .*missing-resolv\.conf: ENOENT/],
  ['breaker without discovery in the block (breaker requires it)', block('      - acl: {}\n      - breaker: {}\n      - forward: { to: [127.0.0.1:5399] }\n'), /:5:9 plugin breaker: requires discovery in this server block; add `- discovery` before or after it/],
  ['forward: a zero timeout', block('      - acl: {}\n      - forward: { to: [127.0.0.1:5399], timeout: 0s }\n'), /plugin forward: option timeout: must be above 0/],
];

describe('validate reports what start-up refuses', () => {
  for (const [what, text, expected] of cases) {
    test(what, async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-validate-'));
      const file = path.join(dir, 'Corefile.yaml');
      fs.writeFileSync(file, text);
      try {
        const v = spawnSync(process.execPath, [CLI, 'validate', file], { encoding: 'utf8' });
        assert.equal(v.status, 1, `validate must fail: ${v.stdout}${v.stderr}`);
        assert.match(v.stderr, expected);
        assert.deepEqual(fs.readdirSync(dir), ['Corefile.yaml'], 'validate created nothing');
        const err = await startServer(text).then(
          (s) => s.stop().then(() => null),
          (e: unknown) => e,
        );
        assert.ok(err instanceof ConfigError, `start-up must fail too: ${String(err)}`);
        const lines = err.issues.map(formatIssue).join('\n');
        assert.match(lines, new RegExp(expected.source.replace(/^:\d+:\d+ /, '')));
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
