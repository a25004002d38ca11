import * as fs from 'node:fs';
import * as path from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import type { Static } from '@sinclair/typebox';
import type { ListenSpec, TcpLimits } from '../core/listeners';
import type { LogOptions } from '../core/log';
import type { AnyPluginDefinition } from '../core/plugin';
import { normaliseName } from '../core/wire/names';
import { LogSchema, ServerBlockSchema, StorageSchema, TopSchema } from './coreSchema';
import { loadCustomPlugin } from './customPlugin';
import { declarationProblem, dependencyIssues } from './dependencies';
import { ConfigError, OptionError, optionPath, type ConfigIssue } from './errors';
import { parseListen } from './listen';
import { PositionIndex, type Path, type Position } from './positions';
import { SchemaSet, type SchemaProblem } from './validate';

export type StorageConfig = Static<typeof StorageSchema>;

/** The `storage:` block as the storage layer takes it (durations in ms under their own names). */
export function storageOptions(cfg: StorageConfig): import('../storage/open').StorageConfig {
  return {
    client: cfg.client,
    connection: cfg.connection,
    synchronous: cfg.synchronous,
    busy_timeout_ms: cfg.busy_timeout,
    acquire_timeout_ms: cfg.acquire_timeout,
    lock_timeout_ms: cfg.lock_timeout,
    statement_timeout_ms: cfg.statement_timeout,
    ...(cfg.pool ? { pool: cfg.pool } : {}),
    ...(cfg.schema ? { searchPath: cfg.schema } : {}),
  };
}

/** One plugin of a chain, validated, with what is needed to point at it in the file. */
export interface PluginEntryConfig {
  readonly name: string;
  readonly definition: AnyPluginDefinition;
  readonly options: Record<string, unknown>;
  readonly signature: string;
  /** `builtin` or the custom plugin's file. */
  readonly source: string;
  readonly path: Path;
  /** Path of the options inside the document (for option positions). */
  readonly optionsPath: Path;
}

export interface ServerBlockConfig {
  readonly name: string;
  readonly listen: readonly ListenSpec[];
  readonly zones: readonly string[];
  readonly ednsSize: number;
  readonly tcp: TcpLimits;
  readonly plugins: readonly PluginEntryConfig[];
  readonly path: Path;
}

export interface CoreConfig {
  readonly file: string;
  readonly dir: string;
  readonly servers: readonly ServerBlockConfig[];
  readonly storage: StorageConfig;
  readonly log: LogOptions;
  readonly shutdownGraceMs: number;
  readonly reload: { readonly watch: boolean; readonly debounceMs: number };
  /** Finds line:column for a path in the file (used for errors raised later, e.g. by a plugin's setup). */
  readonly positions: PositionIndex;
  readonly warnings: readonly ConfigIssue[];
  /**
   * Blocks the server will guard by itself (no acl nor another guard: only loopback and on-link private clients
   * are answered). Printed as warnings by `codexdns validate` and at start; kept apart from `warnings`, which
   * are about the chain as written.
   */
  readonly unguarded: readonly ConfigIssue[];
}

/** Where built-in plugins come from; the loader asks it before treating a name as unknown. */
export interface PluginCatalog {
  get(name: string): AnyPluginDefinition | undefined;
  names(): string[];
}

/** Reads and validates a configuration file; throws ConfigError listing every problem. */
export async function loadConfigFile(file: string, catalog: PluginCatalog): Promise<CoreConfig> {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = fs.readFileSync(abs, 'utf8');
  } catch (err) {
    throw new ConfigError([{ file: displayName(abs), line: 1, col: 1, message: `cannot read: ${(err as Error).message}`, severity: 'error' }]);
  }
  return parseConfig(text, abs, catalog);
}

/** The file as messages name it: relative to the working folder when inside it. */
export function displayName(abs: string): string {
  const rel = path.relative(process.cwd(), abs);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : abs;
}

/** Validates configuration text as if it were the file `file` (relative paths resolve against its folder). */
export async function parseConfig(text: string, file: string, catalog: PluginCatalog): Promise<CoreConfig> {
  const fileName = displayName(file);
  const dir = path.dirname(path.resolve(file));
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const issues: ConfigIssue[] = [];
  const warnings: ConfigIssue[] = [];
  const unguarded: ConfigIssue[] = [];
  const at = (pos: Position, message: string, extra: Partial<ConfigIssue> = {}): ConfigIssue => ({ file: fileName, line: pos.line, col: pos.col, message, severity: 'error', ...extra });
  for (const e of doc.errors) {
    // `linePos` is filled only with prettyErrors (which would also rewrite the message); the offset always is.
    const p = e.linePos?.[0] ?? lines.linePos(e.pos[0]);
    issues.push(at(p, `YAML: ${e.message.split('\n')[0]}`));
  }
  if (issues.length) throw new ConfigError(issues);
  const positions = new PositionIndex(doc, lines);
  const report = (base: Path, problems: SchemaProblem[], plugin?: string): void => {
    for (const p of problems) {
      const full = [...base, ...p.path];
      const pos = p.unknownKey !== undefined ? positions.keyOf(full, p.unknownKey) : positions.of(full);
      const option = p.unknownKey !== undefined ? undefined : optionName(p.path);
      issues.push(at(pos, p.message, { plugin, option: option || undefined }));
    }
  };

  const raw = (doc.toJS() ?? {}) as Record<string, unknown>;
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError([at({ line: 1, col: 1 }, 'the file must be a map with a `servers:` list')]);
  }
  const schemas = new SchemaSet();
  report([], schemas.validate(TopSchema, raw));
  const servers: ServerBlockConfig[] = [];
  const blocks = Array.isArray(raw.servers) ? raw.servers : [];
  for (let b = 0; b < blocks.length; b++) {
    const blockPath: Path = ['servers', b];
    const block = (blocks[b] ?? {}) as Record<string, unknown>;
    if (typeof block !== 'object' || Array.isArray(block)) {
      issues.push(at(positions.of(blockPath), 'a server block must be a map with listen, zones and plugins'));
      continue;
    }
    const problems = schemas.validate(ServerBlockSchema, block);
    report(blockPath, problems);
    if (problems.length) continue;
    const listen: ListenSpec[] = [];
    (block.listen as string[]).forEach((l, i) => {
      const spec = parseListen(l);
      if (typeof spec === 'string') issues.push(at(positions.of([...blockPath, 'listen', i]), spec, { option: 'listen' }));
      else listen.push(spec);
    });
    const tcp = block.tcp as { idle_timeout: number; max_connections: number; max_inflight: number; read_timeout: number; max_per_client: number; max_unsent: number; drain_timeout: number };
    const plugins: PluginEntryConfig[] = [];
    const entries = block.plugins as unknown[];
    const seen = new Map<string, number>();
    for (let i = 0; i < entries.length; i++) {
      const entryPath: Path = [...blockPath, 'plugins', i];
      const entry = await resolveEntry(entries[i], entryPath, dir, block.listen as string[], catalog, positions, issues, at, report, schemas);
      if (!entry) continue;
      if (seen.has(entry.name)) {
        issues.push(at(positions.of(entryPath), `listed twice in this block (first at entry ${seen.get(entry.name)! + 1})`, { plugin: entry.name }));
        continue;
      }
      seen.set(entry.name, i);
      plugins.push(entry);
      for (const d of entry.definition.deprecated?.(entry.options) ?? []) {
        const pos = positions.of([...entry.optionsPath, ...optionPath(d.option)]);
        warnings.push({ file: fileName, line: pos.line, col: pos.col, plugin: entry.name, option: d.option, severity: 'warning', message: d.message });
      }
    }
    // Only a block whose every entry resolved: an entry with a bad option would read as a missing requirement.
    if (entries.length === plugins.length) issues.push(...dependencyIssues(plugins, (n) => catalog.get(n) !== undefined, (p) => positions.of(p), at));
    warnings.push(...orderWarnings(plugins, positions, fileName));
    if (entries.length === plugins.length && !plugins.some((p) => roleOf(p) === 'guard')) {
      const pos = positions.of([...blockPath, 'plugins']);
      unguarded.push({ file: fileName, line: pos.line, col: pos.col, severity: 'warning', message: 'no acl (or other guard) in this server block: only loopback and on-link private clients will be answered, others get REFUSED; add `acl: { allow: [...] }` to choose who may query' });
    }
    servers.push({
      name: `block${b}`,
      listen,
      zones: (block.zones as string[]).map(normaliseName),
      ednsSize: block.edns_size as number,
      tcp: {
        idleTimeoutMs: tcp.idle_timeout,
        maxConnections: tcp.max_connections,
        maxInFlightPerConnection: tcp.max_inflight,
        readTimeoutMs: tcp.read_timeout,
        maxPerClient: tcp.max_per_client,
        maxUnsentBytes: tcp.max_unsent,
        drainTimeoutMs: tcp.drain_timeout,
      },
      plugins,
      path: blockPath,
    });
  }
  checkListenClashes(servers, positions, issues, at);
  if (issues.length) throw new ConfigError([...issues, ...warnings]);
  const storage = raw.storage as StorageConfig;
  const log = raw.log as Static<typeof LogSchema>;
  const reload = raw.reload as { watch: boolean; debounce: number };
  return {
    file: path.resolve(file),
    dir,
    servers,
    storage,
    log,
    shutdownGraceMs: raw.shutdown_grace as number,
    reload: { watch: reload.watch, debounceMs: reload.debounce },
    positions,
    warnings,
    unguarded,
  };
}

function optionName(p: readonly (string | number)[]): string {
  return p.map((s) => (typeof s === 'number' ? `[${s}]` : s)).join('.').replace(/\.\[/g, '[');
}

type At = (pos: Position, message: string, extra?: Partial<ConfigIssue>) => ConfigIssue;

async function resolveEntry(
  value: unknown, entryPath: Path, dir: string, listen: readonly string[], catalog: PluginCatalog, positions: PositionIndex, issues: ConfigIssue[], at: At,
  report: (base: Path, problems: SchemaProblem[], plugin?: string) => void, schemas: SchemaSet,
): Promise<PluginEntryConfig | undefined> {
  let name: string;
  let options: unknown;
  let optionsPath: Path;
  let definition: AnyPluginDefinition | undefined;
  let source = 'builtin';
  let version = '';
  if (typeof value === 'string') {
    name = value;
    options = {};
    optionsPath = entryPath;
  } else if (value && typeof value === 'object' && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj);
    if ('use' in obj) {
      const extra = keys.filter((k) => k !== 'use' && k !== 'options');
      if (extra.length) issues.push(at(positions.keyOf(entryPath, extra[0]), `unknown key ${extra[0]} (a custom plugin entry is \`use: FILE\` with optional \`options:\`)`));
      if (typeof obj.use !== 'string') {
        issues.push(at(positions.of([...entryPath, 'use']), '`use` takes a file path or a package name'));
        return undefined;
      }
      try {
        const loaded = await loadCustomPlugin(obj.use, dir);
        definition = loaded.definition;
        source = loaded.file;
        version = loaded.version;
        name = definition.name;
      } catch (err) {
        issues.push(at(positions.of([...entryPath, 'use']), `cannot load plugin: ${(err as Error).message}`, { plugin: obj.use }));
        return undefined;
      }
      options = obj.options ?? {};
      optionsPath = [...entryPath, 'options'];
    } else {
      if (keys.length !== 1) {
        issues.push(at(positions.of(entryPath), `a plugin entry is one \`name: options\` pair, found ${keys.length} keys (${keys.join(', ')}) — is an option indented wrongly?`));
        return undefined;
      }
      name = keys[0];
      options = obj[name] ?? {};
      optionsPath = [...entryPath, name];
    }
  } else {
    issues.push(at(positions.of(entryPath), 'a plugin entry is `name: { options }` or `use: ./file.js`'));
    return undefined;
  }
  if (!definition) {
    definition = catalog.get(name);
    if (!definition) {
      issues.push(at(positions.keyOf(entryPath, name), `unknown plugin (built-in plugins: ${catalog.names().join(', ')}; a custom plugin is \`use: ./file.js\`)`, { plugin: name }));
      return undefined;
    }
  }
  const declared = declarationProblem(definition);
  if (declared !== undefined) {
    issues.push(at(positions.of(source === 'builtin' ? entryPath : [...entryPath, 'use']), declared, { plugin: source === 'builtin' ? name : `${name} (${source})` }));
    return undefined;
  }
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    issues.push(at(positions.of(optionsPath), 'options must be a map', { plugin: name }));
    return undefined;
  }
  const copy = JSON.parse(JSON.stringify(options)) as Record<string, unknown>;
  const label = source === 'builtin' ? name : `${name} (${source})`;
  const problems = schemas.validate(definition.options, copy);
  if (problems.length) {
    report(optionsPath, problems, label);
    return undefined;
  }
  if (definition.check) {
    try {
      definition.check(copy, { resolvePath: (p) => path.resolve(dir, p), listen });
    } catch (err) {
      if (err instanceof OptionError) {
        issues.push(at(positions.of([...optionsPath, ...optionPath(err.option)]), err.message, { plugin: label, option: err.option }));
      } else {
        issues.push(at(positions.of(entryPath), `checking the options failed: ${(err as Error).message}`, { plugin: label }));
      }
      return undefined;
    }
  }
  return { name, definition, options: copy, signature: JSON.stringify(options) + version, source, path: entryPath, optionsPath };
}

/**
 * Chain order is the user's, so a guard (acl, a query rate limit) listed after a plugin that can answer
 * (a cache hit) would be skipped for those answers: say so.
 */
function roleOf(p: PluginEntryConfig): string | undefined {
  return typeof p.definition.role === 'function' ? p.definition.role(p.options as never) : p.definition.role;
}

function orderWarnings(plugins: readonly PluginEntryConfig[], positions: PositionIndex, file: string): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  let firstAnswerer: PluginEntryConfig | undefined;
  for (const p of plugins) {
    const role = typeof p.definition.role === 'function' ? p.definition.role(p.options) : p.definition.role;
    if (role === 'answers' && !firstAnswerer) firstAnswerer = p;
    if (role === 'guard' && firstAnswerer) {
      const pos = positions.of(p.path);
      out.push({ file, line: pos.line, col: pos.col, plugin: p.name, severity: 'warning', message: `guard listed after ${firstAnswerer.name}, which can answer first: queries it answers skip ${p.name} (move ${p.name} above ${firstAnswerer.name})` });
    }
  }
  return out;
}

function checkListenClashes(servers: ServerBlockConfig[], positions: PositionIndex, issues: ConfigIssue[], at: At): void {
  const zonesByListen = new Map<string, Set<string>>();
  for (const s of servers) {
    for (const l of s.listen) {
      const key = `${l.transport}://${l.host}:${l.port}`;
      const zones = zonesByListen.get(key) ?? new Set<string>();
      for (const z of s.zones) {
        if (zones.has(z)) issues.push(at(positions.of([...s.path, 'zones']), `zone ${z || '.'} is already served on ${l.text} by another block`));
        zones.add(z);
      }
      zonesByListen.set(key, zones);
    }
  }
}
