import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AnyPluginDefinition } from '../core/plugin';

/** A custom plugin module resolved from a `use:` entry. */
export interface LoadedPlugin {
  readonly definition: AnyPluginDefinition;
  /** The file it came from (for error messages). */
  readonly file: string;
  /** Changes when the file changes: part of the state signature, so an edited plugin starts afresh. */
  readonly version: string;
}

let generation = 0;

/**
 * Loads a plugin named by path (relative to the configuration's folder) or by package name. The module is
 * loaded afresh when its file changed: CommonJS by dropping it from require's cache, ESM through a new URL
 * (Node cannot unload an ES module, so each edit of an ESM plugin keeps its old copy in memory: see docs).
 */
export async function loadCustomPlugin(spec: string, configDir: string): Promise<LoadedPlugin> {
  const isPath = spec.startsWith('.') || spec.startsWith('/');
  let file: string;
  if (isPath) {
    file = path.resolve(configDir, spec);
    if (!fs.existsSync(file)) throw new Error(`${file}: no such file`);
  } else {
    try {
      file = require.resolve(spec, { paths: [configDir, process.cwd()] });
    } catch {
      throw new Error(`package ${spec} is not installed (npm install ${spec} next to the configuration)`);
    }
  }
  // The files it required count too: a saved helper module is a new version of the plugin.
  const versionOf = (): string => [file, ...(localDeps.get(file) ?? [])].map(fileVersion).join('|');
  let mod: unknown;
  try {
    mod = await importFresh(file, versionOf());
  } catch (err) {
    const where = locate(err, file);
    throw new Error(`${where ?? file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const definition = pickDefinition(mod);
  if (!definition) throw new Error(`${file}: exports no plugin definition (export default definePlugin({ name, options, setup }))`);
  const version = versionOf();
  loadedVersions.set(file, version);
  return { definition, file, version };
}

const loadedVersions = new Map<string, string>();
/** The local files (not under node_modules) each CommonJS plugin required when it was last loaded. */
const localDeps = new Map<string, string[]>();

function fileVersion(f: string): string {
  try {
    const st = fs.statSync(f);
    return `${st.mtimeMs}-${st.size}`;
  } catch {
    return 'gone';
  }
}

/**
 * The plugin's own modules that `file` required, transitively (bounded), as loaded now: files in its folder or
 * below, not under node_modules — not codexdns itself, nor any package.
 */
function localModules(file: string): string[] {
  const out = new Set<string>();
  const home = path.dirname(file) + path.sep;
  const walk = (m: NodeModule | undefined, depth: number): void => {
    for (const c of m?.children ?? []) {
      if (out.has(c.filename) || out.size >= 256 || depth > 16 || !c.filename.startsWith(home) || c.filename.includes(`${path.sep}node_modules${path.sep}`)) continue;
      out.add(c.filename);
      walk(c, depth + 1);
    }
  };
  walk(require.cache[file], 0);
  out.delete(file);
  return [...out];
}
/** The URL each ES module plugin was last imported under, with its version: reused while the file is unchanged. */
const esmUrls = new Map<string, { version: string; url: string }>();

async function importFresh(file: string, version: string): Promise<unknown> {
  const esm = file.endsWith('.mjs') || (file.endsWith('.js') && nearestPackageType(file) === 'module');
  if (!esm) {
    if (loadedVersions.get(file) !== version) {
      const old = require.cache[file];
      for (const dep of localDeps.get(file) ?? []) delete require.cache[dep];
      delete require.cache[file];
      // require() also lists every module it loads in module.children: drop the old copy there too, or it
      // stays reachable (and in memory) for the life of the process.
      if (old) {
        const i = module.children.indexOf(old);
        if (i !== -1) module.children.splice(i, 1);
      }
    }
    loadedVersions.set(file, version);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod: unknown = require(file);
    localDeps.set(file, localModules(file));
    return mod;
  }
  let entry = esmUrls.get(file);
  if (entry === undefined || entry.version !== version) {
    entry = { version, url: `${pathToFileURL(file).href}?v=${encodeURIComponent(version)}-${++generation}` };
    esmUrls.set(file, entry);
  }
  return import(entry.url);
}

/**
 * `FILE:LINE:COL` of what went wrong inside a plugin file that failed to load: from the stack (a CommonJS syntax
 * error's first line and caret, or the first frame in the file), else, for an ES module's syntax error (whose
 * stack names no file), from `node --check` — run only on this failure path.
 */
function locate(err: unknown, file: string): string | undefined {
  const stack = err instanceof Error ? (err.stack ?? '') : '';
  const fromCaret = (text: string): string | undefined => {
    const lines = text.split('\n');
    const head = new RegExp(`^${escapeRe(file)}:(\\d+)$`).exec(lines[0] ?? '');
    if (head === null) return undefined;
    const caret = (lines[2] ?? '').indexOf('^');
    return `${file}:${head[1]}:${caret >= 0 ? caret + 1 : 1}`;
  };
  const direct = fromCaret(stack);
  if (direct !== undefined) return direct;
  const url = pathToFileURL(file).href;
  const frame = new RegExp(`(?:${escapeRe(file)}|${escapeRe(url)}(?:\\?[^:]*)?):(\\d+):(\\d+)`).exec(stack);
  if (frame !== null) return `${file}:${frame[1]}:${frame[2]}`;
  if (err instanceof SyntaxError) {
    const check = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8', timeout: 10_000 });
    return fromCaret(check.stderr ?? '');
  }
  return undefined;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function nearestPackageType(file: string): string | undefined {
  let dir = path.dirname(file);
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg)) {
      try {
        return (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { type?: string }).type;
      } catch {
        return undefined;
      }
    }
    const up = path.dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

function pickDefinition(mod: unknown): AnyPluginDefinition | undefined {
  const candidates = [mod, (mod as { default?: unknown })?.default, (mod as { default?: { default?: unknown } })?.default?.default, (mod as { plugin?: unknown })?.plugin];
  for (const c of candidates) {
    if (c && typeof c === 'object' && typeof (c as AnyPluginDefinition).setup === 'function' && typeof (c as AnyPluginDefinition).name === 'string') {
      return c as AnyPluginDefinition;
    }
  }
  return undefined;
}
