const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/** Text accepted wherever an option is a duration: `500ms`, `30s`, `5m`, `24h`, `90d`, or a number of seconds. */
export const DURATION_PATTERN = '^\\d+(\\.\\d+)?(ms|s|m|h|d)$';

/** Converts `500ms`/`30s`/`5m`/`2h`/`90d` (or a plain number of seconds) to milliseconds; undefined when invalid. */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value * 1000 : undefined;
  if (typeof value !== 'string') return undefined;
  const m = DURATION_RE.exec(value.trim());
  if (!m) return undefined;
  return Math.round(parseFloat(m[1]) * UNITS[m[2]]);
}

/** Formats milliseconds back to the shortest exact unit, for messages and the schema's defaults. */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms >= UNITS[unit] && ms % UNITS[unit] === 0) return `${ms / UNITS[unit]}${unit}`;
  }
  return `${ms}ms`;
}
