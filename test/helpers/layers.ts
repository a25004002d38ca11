import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ts from 'typescript';

/**
 * The import graph of the repository's own sources and the layer rules of docs/architecture.md. Kept apart from
 * the test so the test can feed it fake files and prove it reports what it should (a checker that reads
 * nothing, or misses a kind of import, would otherwise pass forever).
 */

/** How a file names a module. */
export type ImportKind = 'import' | 'export' | 'import-equals' | 'import-type' | 'augmentation' | 'dynamic-import' | 'require';

/** One module specifier in one file. `typeOnly`: erased at compile time (cannot run code, can still tangle types). */
export interface ImportEdge {
  readonly kind: ImportKind;
  readonly from: string;
  readonly specifier: string;
  /** The repository file it resolves to (posix, relative to the root), or null for a package or an unresolved path. */
  readonly to: string | null;
  readonly typeOnly: boolean;
  readonly line: number;
  /** A `require`/`import()` whose argument is computed (its text is the specifier): no rule can see what it loads. */
  readonly computed?: boolean;
}

/** What the layers are made of: posix paths relative to the repository root, mapped to their text. */
export type SourceSet = ReadonlyMap<string, string>;

/** The folders (and root files) that are the product. */
export const SOURCE_ROOTS = ['index.ts', 'core', 'config', 'storage', 'plugins', 'server', 'cli', 'testing'] as const;
/** TypeScript outside the layers: tests and benchmarks use every layer; examples are plugins written against the package. */
export const OUTSIDE_ROOTS = ['test', 'bench', 'examples'] as const;

export function readSources(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const visit = (rel: string): void => {
    const abs = path.join(root, rel);
    if (!fs.existsSync(abs)) return;
    if (fs.statSync(abs).isDirectory()) {
      for (const name of fs.readdirSync(abs).sort()) {
        if (name === 'node_modules' || name === 'dist') continue;
        visit(rel === '' ? name : `${rel}/${name}`);
      }
    } else if (rel.endsWith('.ts') && !rel.endsWith('.d.ts')) {
      out.set(rel, fs.readFileSync(abs, 'utf8'));
    }
  };
  for (const r of SOURCE_ROOTS) visit(r);
  return out;
}

function resolve(from: string, specifier: string, files: SourceSet): string | null {
  if (!specifier.startsWith('.')) return null;
  const base = path.posix.normalize(path.posix.join(path.posix.dirname(from), specifier));
  const stem = base.replace(/\.(c|m)?js$/, '');
  for (const candidate of [base, `${stem}.ts`, `${stem}/index.ts`]) {
    if (files.has(candidate)) return candidate;
  }
  return null;
}

function stringArg(node: ts.CallExpression): string | null {
  const arg = node.arguments[0];
  if (arg && (ts.isStringLiteral(arg) || ts.isNoSubstitutionTemplateLiteral(arg))) return arg.text;
  return null;
}

/** Erased imports: `import type`, `import { type A, type B }`, `export type … from`. */
function declarationIsTypeOnly(node: ts.ImportDeclaration | ts.ExportDeclaration): boolean {
  if (ts.isExportDeclaration(node)) {
    if (node.isTypeOnly) return true;
    const clause = node.exportClause;
    return !!clause && ts.isNamedExports(clause) && clause.elements.length > 0 && clause.elements.every((e) => e.isTypeOnly);
  }
  const clause = node.importClause;
  if (!clause) return false; // `import './x'` runs the module
  if (clause.isTypeOnly) return true;
  if (clause.name) return false;
  const named = clause.namedBindings;
  return !!named && ts.isNamedImports(named) && named.elements.length > 0 && named.elements.every((e) => e.isTypeOnly);
}

/** Every specifier a file names: import/export … from, `import x = require()`, `import()`, `require()`, `require.resolve()`, `import('…').T` types and `declare module '…'` augmentations. */
export function importsOf(file: string, text: string, files: SourceSet): ImportEdge[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const edges: ImportEdge[] = [];
  const add = (kind: ImportKind, node: ts.Node, specifier: string, typeOnly: boolean): void => {
    const line = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
    edges.push({ kind, from: file, specifier, to: resolve(file, specifier, files), typeOnly, line });
  };
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      add(ts.isImportDeclaration(node) ? 'import' : 'export', node, node.moduleSpecifier.text, declarationIsTypeOnly(node));
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)
      && ts.isStringLiteral(node.moduleReference.expression)) {
      add('import-equals', node, node.moduleReference.expression.text, node.isTypeOnly);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      add('import-type', node, node.argument.literal.text, true);
    } else if (ts.isModuleDeclaration(node) && ts.isStringLiteral(node.name)) {
      add('augmentation', node, node.name.text, true);
    } else if (ts.isCallExpression(node)) {
      const callee = node.expression;
      const isImport = callee.kind === ts.SyntaxKind.ImportKeyword;
      const isRequire = ts.isIdentifier(callee) && callee.text === 'require';
      const isResolve = ts.isPropertyAccessExpression(callee) && ts.isIdentifier(callee.expression)
        && callee.expression.text === 'require' && callee.name.text === 'resolve';
      if ((isImport || isRequire || isResolve) && node.arguments.length > 0) {
        const spec = stringArg(node);
        if (spec !== null) add(isImport ? 'dynamic-import' : 'require', node, spec, false);
        else {
          const line = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
          edges.push({ kind: isImport ? 'dynamic-import' : 'require', from: file, specifier: node.arguments[0].getText(sf), to: null, typeOnly: false, line, computed: true });
        }
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return edges;
}

export function importGraph(files: SourceSet): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const [file, text] of files) edges.push(...importsOf(file, text, files));
  return edges;
}

/** The layer a file belongs to: its top folder (`core`, `plugins`, …), or `index.ts` for the root entry. */
function topOf(file: string): string {
  return file.split('/')[0];
}

function layerName(top: string): string {
  return top.endsWith('.ts') ? `the root ${top}` : `${top}/`;
}

/** For files under plugins/: the plugin folder name (`pkg` for the shared helpers), or '' for a file directly in plugins/. */
function pluginOf(file: string): string {
  const parts = file.split('/');
  return parts.length > 2 ? parts[1] : '';
}

/** Which top folders (or root files) each layer must not reach; docs/architecture.md § Rules says why. */
const FORBIDDEN: Readonly<Record<string, readonly string[]>> = {
  core: ['config', 'storage', 'plugins', 'server', 'cli', 'testing', 'index.ts'],
  config: ['plugins', 'server', 'cli', 'testing', 'index.ts'],
  storage: ['plugins', 'server', 'cli', 'testing', 'index.ts'],
  plugins: ['server', 'cli', 'testing', 'index.ts'],
  server: ['cli', 'testing'],
  testing: ['cli'],
  'index.ts': ['cli', 'testing'],
};

/** Imports that break a layer rule, as `FILE:LINE → SPECIFIER (why)`, each once (a `require` cast with `typeof import()` names its module twice). */
export function layerViolations(edges: readonly ImportEdge[]): string[] {
  const out: string[] = [];
  for (const e of edges) {
    if (e.to === null) continue;
    const from = topOf(e.from);
    const to = topOf(e.to);
    const where = `${e.from}:${e.line} → ${e.specifier}`;
    if (FORBIDDEN[from]?.includes(to)) {
      out.push(`${where} (${layerName(from)} must not import ${layerName(to)})`);
      continue;
    }
    if (from !== 'plugins' || to !== 'plugins') continue;
    const source = pluginOf(e.from);
    const target = pluginOf(e.to);
    if (source === target) continue;
    if (source === 'pkg') {
      out.push(`${where} (plugins/pkg/ is shared by plugins and imports none of them)`);
    } else if (target !== 'pkg' && !(e.to === `plugins/${target}/hooks.ts` && e.typeOnly)) {
      out.push(`${where} (a plugin reaches another only through \`import type\` of plugins/${target || 'NAME'}/hooks.ts)`);
    }
  }
  return [...new Set(out)];
}

/** Cycles among the files (type-only imports included), one shortest per file that lies on one, as `A → B → A`. */
export function importCycles(edges: readonly ImportEdge[]): string[] {
  const next = new Map<string, Set<string>>();
  for (const e of edges) {
    if (e.to === null) continue;
    let set = next.get(e.from);
    if (!set) next.set(e.from, (set = new Set()));
    set.add(e.to);
  }
  const seen = new Set<string>();
  const out: string[] = [];
  for (const start of [...next.keys()].sort()) {
    // Breadth-first from start's successors back to start: the shortest cycle through start, if any.
    const parent = new Map<string, string>();
    const queue: string[] = [];
    for (const n of [...(next.get(start) ?? [])].sort()) {
      if (!parent.has(n)) {
        parent.set(n, start);
        queue.push(n);
      }
    }
    let found = false;
    for (let i = 0; i < queue.length && !found; i++) {
      const node = queue[i];
      if (node === start) {
        found = true;
        break;
      }
      for (const n of [...(next.get(node) ?? [])].sort()) {
        if (!parent.has(n)) {
          parent.set(n, node);
          queue.push(n);
        }
      }
    }
    if (!found) continue;
    const cycle: string[] = [start];
    for (let n = parent.get(start) as string; n !== start; n = parent.get(n) as string) cycle.unshift(n);
    cycle.unshift(start);
    // One report per cycle, whichever of its files it was found from.
    const body = cycle.slice(0, -1);
    const least = body.indexOf([...body].sort()[0]);
    const key = [...body.slice(least), ...body.slice(0, least)].join(' → ');
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(`${key} → ${body[least]}`);
  }
  return out;
}
