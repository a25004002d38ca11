// A `codexdns` package next to a test's Corefile, pointing at this build: what `npm install codexdns` gives a
// plugin author. The plugin tests (custom-plugin, chain, plugin-*) write it with their plugin files.
import * as path from 'node:path';
import { startServer, type TestServer } from '../../testing';

const distIndex = path.resolve(__dirname, '..', '..', 'index.js');

/** The files of the package, to spread into startServer's `files`. */
export const SHIM: Record<string, string> = {
  'node_modules/codexdns/package.json': JSON.stringify({ name: 'codexdns', main: 'index.js' }),
  'node_modules/codexdns/index.js': `module.exports = require(${JSON.stringify(distIndex)});\n`,
};

/** Starts a server on `text` with the package and `files`, runs `fn`, and stops the server. */
export async function withServer(text: string, files: Record<string, string>, fn: (s: TestServer) => Promise<void>): Promise<void> {
  const s = await startServer(text, { files: { ...SHIM, ...files } });
  try {
    await fn(s);
  } finally {
    await s.stop();
  }
}
