import { Type, type Static, type TSchema, type TUnsafe } from '@sinclair/typebox';
import { DURATION_PATTERN, formatDuration } from './duration';

export { Type };
export type { Static, TSchema };

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
