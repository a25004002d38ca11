import type { Static, TSchema, TUnsafe } from '@sinclair/typebox';
import { DURATION_PATTERN, formatDuration } from './duration';

export type { Static, TSchema };

/** TypeBox's builder, as a type only: our `Type` has its signatures and the schemas it makes. */
type TypeBuilder = typeof import('@sinclair/typebox').Type;
type Options = Record<string, unknown> | undefined;
type Schema = Record<string | symbol, unknown>;

// TypeBox's own symbols (registered globally), so schemas made here and by TypeBox mix freely.
const Kind = Symbol.for('TypeBox.Kind');
const OptionalKind = Symbol.for('TypeBox.Optional');

const make = (schema: Schema, options: Options): Schema => (options === undefined ? schema : { ...options, ...schema });

/**
 * The builders the configuration schemas use, made here: they return the same JSON Schema objects as TypeBox's
 * (same keys, same symbols). Loading all of TypeBox costs ≈ 100 ms of start-up and ≈ 7 MB of resident memory
 * (730 module loads) — a tenth of a small box's budget — for a dozen one-line functions. Any other builder a
 * custom plugin asks for (`Type.Record`, `Type.Tuple`, …) is TypeBox's own, loaded on first use.
 */
const light = {
  Object: (properties: Record<string, Schema>, options?: Options): Schema => {
    const required = Object.keys(properties).filter((k) => properties[k][OptionalKind] !== 'Optional');
    return make(required.length > 0 ? { [Kind]: 'Object', type: 'object', required, properties } : { [Kind]: 'Object', type: 'object', properties }, options);
  },
  Optional: (schema: Schema, enable?: boolean): Schema => {
    if (enable === false) {
      const { [OptionalKind]: _dropped, ...rest } = schema;
      return rest;
    }
    return { ...schema, [OptionalKind]: 'Optional' };
  },
  Integer: (options?: Options): Schema => make({ [Kind]: 'Integer', type: 'integer' }, options),
  Number: (options?: Options): Schema => make({ [Kind]: 'Number', type: 'number' }, options),
  String: (options?: Options): Schema => make({ [Kind]: 'String', type: 'string' }, options),
  Boolean: (options?: Options): Schema => make({ [Kind]: 'Boolean', type: 'boolean' }, options),
  Unknown: (options?: Options): Schema => make({ [Kind]: 'Unknown' }, options),
  Literal: (value: string | number | boolean, options?: Options): Schema => make({ [Kind]: 'Literal', const: value, type: typeof value }, options),
  Array: (items: Schema, options?: Options): Schema => make({ [Kind]: 'Array', type: 'array', items }, options),
  Union: (types: Schema[], options?: Options): Schema =>
    types.length === 0 ? make({ [Kind]: 'Never', not: {} }, options)
      : types.length === 1 ? make(types[0], options)
        : make({ [Kind]: 'Union', anyOf: types }, options),
  Unsafe: (options: Schema = {}): Schema => make({ [Kind]: options[Kind] ?? 'Unsafe' }, options),
};

let full: Record<string | symbol, unknown> | undefined;

export const Type = new Proxy(light, {
  get(target, key) {
    if (Object.prototype.hasOwnProperty.call(target, key)) return target[key as keyof typeof light];
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    full ??= (require('@sinclair/typebox') as { Type: Record<string | symbol, unknown> }).Type;
    const v = full[key];
    return typeof v === 'function' ? v.bind(full) : v;
  },
}) as unknown as TypeBuilder;

/** Marks a schema node whose value is converted from `30s` text to milliseconds after validation. */
export const DURATION_KEYWORD = 'x-duration';

/** A duration option: written `500ms`, `30s`, `5m`, `24h` (or seconds as a number); the plugin receives milliseconds. */
export function Duration(defaultMs?: number, description?: string): TUnsafe<number> {
  return Type.Unsafe<number>({
    anyOf: [{ type: 'string', pattern: DURATION_PATTERN }, { type: 'number', minimum: 0 }],
    [DURATION_KEYWORD]: true,
    ...(defaultMs !== undefined ? { default: formatDuration(defaultMs) } : {}),
    ...(description ? { description } : {}),
  });
}
