import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Type as TypeBox, type TSchema } from '@sinclair/typebox';
import { Type } from '../config/types';
import { validateAgainst } from '../config/validate';
import { builtinCatalog } from '../server/catalog';

const Kind = Symbol.for('TypeBox.Kind');
const OptionalKind = Symbol.for('TypeBox.Optional');

/** The schema with its TypeBox symbols spelled out, so a comparison sees them too. */
function explicit(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(explicit);
  if (v === null || typeof v !== 'object') return v;
  const o = v as Record<string | symbol, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o)) out[k] = explicit(o[k]);
  if (o[Kind] !== undefined) out['[Kind]'] = o[Kind];
  if (o[OptionalKind] !== undefined) out['[Optional]'] = o[OptionalKind];
  return out;
}

describe('config/types: the light builders', () => {
  test('make the same schemas as TypeBox, symbols and key order included', () => {
    const build = (T: typeof Type): TSchema =>
      T.Object(
        {
          a: T.Integer({ minimum: 1, default: 3, description: 'x' }),
          b: T.Optional(T.String({ pattern: '^[a-z]+$' })),
          c: T.Array(T.Union([T.Literal('one'), T.Literal(2), T.Literal(true)]), { minItems: 1 }),
          d: T.Boolean({ default: false }),
          e: T.Number({ maximum: 1.5 }),
          f: T.Unknown(),
          g: T.Union([T.String()], { description: 'a union of one is that type' }),
          h: T.Union([]),
          i: T.Unsafe<number>({ type: 'number', 'x-duration': true }),
          j: T.Optional(T.Optional(T.Integer()), false),
          k: T.Object({}, { additionalProperties: true }),
        },
        { default: {} },
      );
    assert.deepEqual(explicit(build(Type)), explicit(build(TypeBox)));
    assert.equal(JSON.stringify(build(Type)), JSON.stringify(build(TypeBox)));
  });

  test('other builders are TypeBox\'s own, loaded on first use, and mix with the light ones', () => {
    const schema = Type.Object({ tags: Type.Record(Type.String(), Type.Integer()), pair: Type.Optional(Type.Tuple([Type.String(), Type.Integer()])) });
    assert.deepEqual(schema.required, ['tags']);
    assert.deepEqual(validateAgainst(schema, { tags: { a: 1 }, pair: ['x', 2] }), []);
    assert.match(validateAgainst(schema, { tags: { a: 'no' } }).map((p) => p.message).join(), /integer/);
  });

  test('every built-in plugin\'s options schema compiles, and its defaults pass (only required options missing)', () => {
    for (const name of builtinCatalog.names()) {
      const def = builtinCatalog.get(name);
      assert.ok(def, name);
      const problems = validateAgainst(def.options as TSchema, {});
      assert.deepEqual(problems.filter((p) => !/^missing required option/.test(p.message)), [], name);
    }
  });
});
