import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import type { TSchema } from '@sinclair/typebox';
import { parseDuration } from './duration';
import { DURATION_KEYWORD } from './types';

/** A schema violation at a path inside the validated value. */
export interface SchemaProblem {
  readonly path: (string | number)[];
  /** Set when the problem is an unknown key: the position is the key's own. */
  readonly unknownKey?: string;
  readonly message: string;
}

export type JsonSchema = Record<string, unknown>;

/**
 * The compiled validators of one configuration load. A load creates one and drops it when done, so the compiled
 * code (Ajv generates a function, with its source text, per schema: ≈ 0.75 MB for the shipped chain) is garbage once
 * the server runs instead of staying resident for its whole life; a reload compiles again, as start-up did.
 */
export class SchemaSet {
  private ajv: Ajv | undefined;
  private readonly compiled = new Map<object, { fn: ValidateFunction; schema: JsonSchema }>();

  /**
   * Validates `value` in place against a plugin's (or the core's) schema: fills defaults, converts durations to
   * milliseconds, and reports every problem with its path. Objects reject unknown keys unless the schema says otherwise.
   */
  validate(schema: TSchema, value: unknown): SchemaProblem[] {
    let entry = this.compiled.get(schema);
    if (!entry) {
      if (!this.ajv) {
        this.ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false, coerceTypes: false });
        this.ajv.addKeyword({ keyword: DURATION_KEYWORD });
      }
      const plain = closeObjects(JSON.parse(JSON.stringify(schema)) as JsonSchema);
      entry = { fn: this.ajv.compile(plain), schema: plain };
      this.compiled.set(schema, entry);
    }
    if (entry.fn(value)) {
      convertDurations(entry.schema, value);
      return [];
    }
    return describe(entry.fn.errors ?? [], entry.schema);
  }
}

/** `SchemaSet.validate` for a single value (a set of its own unless one is given). */
export function validateAgainst(schema: TSchema, value: unknown, set: SchemaSet = new SchemaSet()): SchemaProblem[] {
  return set.validate(schema, value);
}

/** A plain JSON Schema of a TypeBox schema with unknown keys closed, for `codexdns schema`. */
export function toJsonSchema(schema: TSchema): JsonSchema {
  return closeObjects(JSON.parse(JSON.stringify(schema)) as JsonSchema);
}

/** Calls `fn` on every schema nested directly in `s` (properties, items, branches, definitions). */
export function eachSubschema(s: JsonSchema, fn: (child: JsonSchema) => void): void {
  for (const key of ['properties', 'patternProperties', '$defs', 'definitions']) {
    const group = s[key] as Record<string, JsonSchema> | undefined;
    if (group) for (const v of Object.values(group)) fn(v);
  }
  for (const key of ['items', 'additionalProperties', 'not']) {
    const v = s[key];
    if (v && typeof v === 'object' && !Array.isArray(v)) fn(v as JsonSchema);
  }
  for (const key of ['anyOf', 'oneOf', 'allOf']) {
    const list = s[key] as JsonSchema[] | undefined;
    if (list) for (const v of list) fn(v);
  }
}

function closeObjects(s: JsonSchema): JsonSchema {
  if (s.type === 'object' && s.properties && s.additionalProperties === undefined && s.patternProperties === undefined) {
    s.additionalProperties = false;
  }
  eachSubschema(s, closeObjects);
  return s;
}

function convertDurations(schema: JsonSchema, value: unknown, parent?: Record<string, unknown> | unknown[], key?: string | number): void {
  if (schema[DURATION_KEYWORD] === true && parent !== undefined && key !== undefined) {
    const ms = parseDuration(value);
    if (ms !== undefined) (parent as Record<string | number, unknown>)[key] = ms;
    return;
  }
  if (Array.isArray(value) && schema.items && typeof schema.items === 'object') {
    value.forEach((v, i) => convertDurations(schema.items as JsonSchema, v, value, i));
    return;
  }
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    const props = (schema.properties ?? {}) as Record<string, JsonSchema>;
    for (const [k, sub] of Object.entries(props)) if (k in obj) convertDurations(sub, obj[k], obj, k);
    const extra = schema.additionalProperties;
    if (extra && typeof extra === 'object') {
      for (const k of Object.keys(obj)) if (!(k in props)) convertDurations(extra as JsonSchema, obj[k], obj, k);
    }
  }
  for (const alt of [...((schema.anyOf as JsonSchema[]) ?? []), ...((schema.oneOf as JsonSchema[]) ?? [])]) {
    if (value && typeof value === 'object') convertDurations(alt, value, parent, key);
  }
}

function pathOf(instancePath: string): (string | number)[] {
  if (instancePath === '') return [];
  return instancePath.slice(1).split('/').map((seg) => {
    const s = seg.replace(/~1/g, '/').replace(/~0/g, '~');
    return /^\d+$/.test(s) ? Number(s) : s;
  });
}

function schemaAt(root: JsonSchema, schemaPath: string): JsonSchema | undefined {
  let node: unknown = root;
  for (const seg of schemaPath.replace(/^#\//, '').split('/')) {
    if (node === undefined || node === null) return undefined;
    node = (node as Record<string, unknown>)[seg.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return node as JsonSchema | undefined;
}

/**
 * The schema's own words for a failed value: an `errorMessage` string on the node that failed (or on the
 * property holding an `anyOf` that did), so a plugin says "a time such as 07:30" rather than a raw pattern.
 */
function customMessage(root: JsonSchema, schemaPath: string): string | undefined {
  const parent = schemaPath.replace(/\/[^/]+$/, '');
  for (const p of [parent, parent.replace(/\/(anyOf|oneOf)\/\d+.*$/, ''), schemaPath.replace(/\/(anyOf|oneOf)$/, '')]) {
    const m = schemaAt(root, p)?.errorMessage;
    if (typeof m === 'string') return m;
  }
  return undefined;
}

function describe(errors: ErrorObject[], root: JsonSchema): SchemaProblem[] {
  const out: SchemaProblem[] = [];
  const seen = new Set<string>();
  const durationPaths = new Set<string>();
  for (const e of errors) {
    const parentSchemaPath = e.schemaPath.replace(/\/anyOf\/\d+\/.*$/, '').replace(/\/anyOf$/, '');
    const node = schemaAt(root, parentSchemaPath);
    if (node && node[DURATION_KEYWORD] === true) durationPaths.add(e.instancePath);
  }
  for (const e of errors) {
    const path = pathOf(e.instancePath);
    let problem: SchemaProblem;
    const custom = e.keyword === 'additionalProperties' || e.keyword === 'required' ? undefined : customMessage(root, e.schemaPath);
    if (custom !== undefined) {
      problem = { path, message: custom };
    } else if (durationPaths.has(e.instancePath)) {
      problem = { path, message: 'must be a duration such as 500ms, 30s, 5m or 24h' };
    } else if (e.keyword === 'additionalProperties') {
      const key = String((e.params as { additionalProperty: string }).additionalProperty);
      problem = { path, unknownKey: key, message: `unknown option ${key}` };
    } else if (e.keyword === 'required') {
      problem = { path, message: `missing required option ${(e.params as { missingProperty: string }).missingProperty}` };
    } else if (e.keyword === 'enum') {
      problem = { path, message: `must be one of ${((e.params as { allowedValues: unknown[] }).allowedValues).join(', ')}` };
    } else if (e.keyword === 'anyOf' || e.keyword === 'oneOf') {
      continue;
    } else {
      problem = { path, message: e.message ?? 'invalid value' };
    }
    const key = `${path.join('/')}|${problem.unknownKey ?? ''}|${problem.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(problem);
  }
  // anyOf/oneOf failures whose branches produced no specific message still need to be reported once.
  if (out.length === 0 && errors.length > 0) out.push({ path: pathOf(errors[0].instancePath), message: errors[0].message ?? 'invalid value' });
  return out;
}
