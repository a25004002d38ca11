#!/usr/bin/env node
import './v8Flags';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError, formatIssue } from '../config/errors';
import { loadConfigFile, storageOptions } from '../config/load';
import { loadCustomPlugin } from '../config/customPlugin';
import { configJsonSchema, type CustomPluginSchema } from '../config/schemaExport';
import { parse as parseYaml } from 'yaml';
import { CodexServer } from '../server/server';
import { builtinCatalog } from '../server/catalog';

const USAGE = `Usage:
  codexdns [--conf FILE]              run the server (default ./Corefile.yaml)
  codexdns validate [FILE]            check a configuration; prints every problem, exits 1 on errors
  codexdns schema [FILE]              print the configuration's JSON Schema (for editors); with FILE, the options of its custom plugins too
  codexdns migrate up|down|status|unlock [SET] [--conf FILE]
                                      apply, roll back one step, list, or clear a stale migration lock; SET:
                                      core (default for down) or a plugin's set (clienttrack, querylog)
  codexdns filter why NAME [--client IP] [--conf FILE]
                                      which list, line and group block or allow NAME
  codexdns --help | --version`;

function fail(msg: string, code = 1): never {
  process.stderr.write(msg.endsWith('\n') ? msg : msg + '\n');
  process.exit(code);
}

function confArg(args: string[], fallback = 'Corefile.yaml'): string {
  const i = args.findIndex((a) => a === '--conf' || a === '-c' || a === '-conf');
  if (i !== -1) {
    if (!args[i + 1]) fail(`--conf needs a file\n${USAGE}`, 2);
    return args[i + 1];
  }
  const eq = args.find((a) => a.startsWith('--conf='));
  return eq ? eq.slice('--conf='.length) : fallback;
}

async function validate(file: string): Promise<number> {
  try {
    const cfg = await loadConfigFile(file, builtinCatalog);
    for (const w of [...cfg.warnings, ...cfg.unguarded]) process.stdout.write(formatIssue(w) + '\n');
    process.stdout.write(`${path.relative(process.cwd(), cfg.file) || cfg.file}: OK (${cfg.servers.length} server block${cfg.servers.length === 1 ? '' : 's'}, ${cfg.servers.reduce((n, s) => n + s.plugins.length, 0)} plugins)\n`);
    return 0;
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const i of err.issues) process.stderr.write(formatIssue(i) + '\n');
      return 1;
    }
    throw err;
  }
}

async function migrate(action: string | undefined, set: string | undefined, file: string): Promise<number> {
  if (action !== 'up' && action !== 'down' && action !== 'status' && action !== 'unlock') fail(`migrate takes up, down, status or unlock\n${USAGE}`, 2);
  const cfg = await loadConfigFile(file, builtinCatalog);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { openStorage, sqliteFilename } = require('../storage/open') as typeof import('../storage/open');
  const options = storageOptions(cfg.storage);
  if (action !== 'up' && options.client === 'sqlite3') {
    // Only `up` may create the database: asking about one must not leave an empty file behind.
    const filename = sqliteFilename(options, cfg.dir);
    if (filename !== ':memory:' && !fs.existsSync(filename)) {
      process.stdout.write(`no database at ${filename}: nothing is applied (\`codexdns migrate up\` or the server's start creates it)\n`);
      return 0;
    }
  }
  const storage = await openStorage(options, { baseDir: cfg.dir });
  // Built-in plugins that own tables migrate them as their own sets (the server registers them at first use):
  // `migrate up` prepares every table the configuration will use.
  const used = new Set(cfg.servers.flatMap((b) => b.plugins.map((p) => p.name)));
  // Loaded here, not at the top: the server itself must not load plugins its configuration does not name.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  if (used.has('clienttrack')) (require('../plugins/clienttrack/store') as typeof import('../plugins/clienttrack/store')).registerClientsMigrations(storage);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  if (used.has('querylog')) storage.migrate.addPlugin('querylog', (require('../plugins/querylog') as typeof import('../plugins/querylog')).migrationsDir());
  try {
    if (action === 'up') {
      const done = await storage.migrate.latest(set);
      process.stdout.write(done.length ? `applied: ${done.join(', ')}\n` : 'already up to date\n');
    } else if (action === 'down') {
      const undone = await storage.migrate.down(set);
      process.stdout.write(undone.length ? `rolled back: ${undone.join(', ')}\n` : 'nothing to roll back\n');
    } else if (action === 'unlock') {
      await storage.migrate.unlock(set);
      process.stdout.write('migration lock cleared\n');
    } else {
      process.stdout.write(JSON.stringify(await storage.migrate.status(), null, 2) + '\n');
    }
  } finally {
    await storage.close();
  }
  return 0;
}

/** The `use:` plugins a Corefile names, loaded (for `schema FILE`); one that does not load is left out, with a note. */
async function customPluginsOf(file: string): Promise<CustomPluginSchema[]> {
  const text = fs.readFileSync(file, 'utf8');
  const doc = parseYaml(text) as { servers?: Array<{ plugins?: unknown[] }> } | null;
  const out: CustomPluginSchema[] = [];
  const seen = new Set<string>();
  for (const block of doc?.servers ?? []) {
    for (const entry of block?.plugins ?? []) {
      const use = (entry as { use?: unknown } | null)?.use;
      if (typeof use !== 'string' || seen.has(use)) continue;
      seen.add(use);
      try {
        out.push({ use, definition: (await loadCustomPlugin(use, path.dirname(path.resolve(file)))).definition });
      } catch (err) {
        process.stderr.write(`schema: ${use} left out: ${(err as Error).message}\n`);
      }
    }
  }
  return out;
}

async function run(file: string): Promise<void> {
  const server = new CodexServer({ configFile: file });
  try {
    await server.start();
  } catch (err) {
    if (err instanceof ConfigError) fail(err.issues.map(formatIssue).join('\n'));
    fail(`codexdns: cannot start: ${err instanceof Error ? err.message : String(err)}`);
  }
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    server.log.info('stopping', { signal });
    server.stop().then(() => process.exit(0), (err: unknown) => {
      server.log.error('error while stopping', { error: err instanceof Error ? err.message : String(err) });
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    server.log.info('SIGHUP: reloading the configuration');
    void server.reload();
  });
  // A bug in a plugin must not take the whole resolver down: log it and keep serving.
  process.on('uncaughtException', (err) => server.log.error('uncaught exception', { error: err.message, stack: err.stack }));
  process.on('unhandledRejection', (err) => server.log.error('unhandled rejection', { error: err instanceof Error ? err.message : String(err) }));
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(USAGE + '\n');
    return;
  }
  if (cmd === '--version' || cmd === '-v') {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    process.stdout.write((require('../../package.json') as { version: string }).version + '\n');
    return;
  }
  if (cmd === 'validate') process.exit(await validate(rest.find((a) => !a.startsWith('-')) ?? confArg(rest)));
  if (cmd === 'schema') {
    const file = rest.find((a) => !a.startsWith('-')) ?? (rest.includes('--conf') ? confArg(rest) : undefined);
    process.stdout.write(JSON.stringify(configJsonSchema(builtinCatalog, file === undefined ? [] : await customPluginsOf(file)), null, 2) + '\n');
    return;
  }
  if (cmd === 'filter' && rest[0] === 'why') {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { filterWhyCommand } = require('./filterWhy') as typeof import('./filterWhy');
    process.exit(await filterWhyCommand(rest.slice(1), confArg(rest.slice(1)), (t) => process.stdout.write(t)));
  }
  if (cmd === 'migrate') {
    const set = rest[1] !== undefined && !rest[1].startsWith('-') ? rest[1] : undefined;
    process.exit(await migrate(rest[0], set, confArg(rest.slice(set === undefined ? 1 : 2))));
  }
  if (cmd !== undefined && !cmd.startsWith('-')) fail(`unknown command ${cmd}\n${USAGE}`, 2);
  await run(confArg(argv));
}

main(process.argv.slice(2)).catch((err: unknown) => fail(`codexdns: ${err instanceof Error ? err.message : String(err)}`));
