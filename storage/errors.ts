import { performance } from 'node:perf_hooks';
import type { StorageLog } from '../core/plugin';

// Typed storage errors, error classification and the bounded retry used by every storage operation.
//
// Callers (the clienttrack plugin, the API, the CLI) only ever see three kinds of failure from storage:
//   - StorageBusyError: the database stayed locked (SQLITE_BUSY / SQLITE_LOCKED, a PostgreSQL deadlock or
//     lock timeout) through every retry. Transient: try again at the next flush.
//   - StorageUnavailableError: the database cannot be reached or used at all (PostgreSQL down or
//     unreachable, connection dropped, pool acquire timeout, SQLite file cannot be opened / disk full / I/O
//     error). Nothing was written (or, for a connection lost during COMMIT on PostgreSQL, the outcome is
//     unknown). Transient from the caller's point of view: keep the data in memory and retry later.
//   - anything else passed through unchanged. `classifyError` tells a caller that keeps data whether it may
//     retry: 'permanent' only when retrying cannot help (a row the schema refuses: constraint, type, value
//     range); 'other' is an error we do not recognise (a renamed table, a cancelled statement, a permission
//     change): it may well go away, so data is kept and retried with a bound, never dropped at once.

/** Logger shape accepted by the storage layer: core's, so a plugin's `StorageHandle.log` and ours are one type. */
export type StorageLogger = StorageLog;

export const noopLogger: StorageLogger = {
  info() {},
  warn() {},
  error() {},
};

export class StorageError extends Error {
  /** Driver error code of the underlying failure (SQLITE_BUSY, ECONNREFUSED, 57P01, …), when known. */
  readonly code: string | undefined;
  constructor(message: string, options?: { cause?: unknown; code?: string }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = new.target.name;
    this.code = options?.code ?? errorCode(options?.cause);
  }
}

/** The database stayed locked through every retry. */
export class StorageBusyError extends StorageError {
  /** How many times the operation was tried. */
  readonly attempts: number;
  constructor(operation: string, attempts: number, cause: unknown) {
    super(`storage ${operation}: database busy after ${attempts} attempts (${shortErrorMessage(cause, 300)})`, { cause });
    this.attempts = attempts;
  }
}

/** The database cannot be reached or used (PostgreSQL down, connection lost, SQLite file unusable). */
export class StorageUnavailableError extends StorageError {
  constructor(operation: string, cause: unknown) {
    super(`storage ${operation}: database unavailable (${shortErrorMessage(cause, 300)})`, { cause });
  }
}

/** Another process holds the migration lock of a migration set (or a stale lock was left behind). */
export class MigrationLockedError extends StorageError {
  readonly set: string;
  constructor(set: string, attempts: number, cause?: unknown) {
    super(
      `migrations "${set}": the migration lock is still held after ${attempts} attempts. Another codexdns ` +
        `instance may be migrating; if none is, a migration was interrupted: release the lock with ` +
        `\`codexdns migrate unlock\``,
      { cause },
    );
    this.set = set;
  }
}

export type ErrorKind = 'busy' | 'timeout' | 'unavailable' | 'permanent' | 'other';

const SQLITE_BUSY_CODES = new Set(['SQLITE_BUSY', 'SQLITE_LOCKED']);
const SQLITE_UNAVAILABLE_CODES = new Set([
  'SQLITE_CANTOPEN',
  'SQLITE_IOERR',
  'SQLITE_FULL',
  'SQLITE_READONLY',
  'SQLITE_CORRUPT',
  'SQLITE_NOTADB',
  'SQLITE_PROTOCOL',
  'SQLITE_MISUSE', // using a closed database handle
]);
const NET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EADDRNOTAVAIL',
]);
// PostgreSQL SQLSTATE: lock conflicts that resolve by retrying at once.
const PG_BUSY_CODES = new Set(['40P01' /* deadlock */, '40001' /* serialization */]);
// PostgreSQL SQLSTATE: a statement that waited its whole lock_timeout / statement_timeout (ours or a role's), or
// was cancelled (pg_cancel_backend). Busy too, but retrying at once would wait the whole timeout again: the
// caller gets StorageBusyError after one attempt and retries later, with its own backoff.
const PG_TIMEOUT_CODES = new Set(['55P03' /* lock_not_available */, '57014' /* query_canceled */]);
// SQLite result codes for a row the schema refuses: the same row fails again however often it is retried.
const SQLITE_PERMANENT_CODES = new Set(['SQLITE_CONSTRAINT', 'SQLITE_MISMATCH', 'SQLITE_TOOBIG', 'SQLITE_RANGE']);
// PostgreSQL SQLSTATE: server going away / refusing connections.
const PG_UNAVAILABLE_CODES = new Set([
  '57P01', // admin_shutdown (also pg_terminate_backend)
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, recovery)
  '53300', // too_many_connections
  '53100', // disk_full
  '58030', // io_error
  '25006', // read_only_sql_transaction: a standby after a failover, or default_transaction_read_only
]);
const UNAVAILABLE_MESSAGES = [
  /connection terminated/i,
  /not queryable/i,
  /connection ended unexpectedly/i,
  /timeout acquiring a connection/i,
  /unable to acquire a connection/i,
  /pool is probably full/i,
  /pool (is )?destroyed/i,
  /database is closed/i,
  /SQLITE_CANTOPEN/,
];

export function errorCode(err: unknown): string | undefined {
  if (err && typeof err === 'object') {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code !== '') return code;
    if (typeof code === 'number') return String(code);
  }
  return undefined;
}

export function errorMessage(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return errorMessage(err.errors[0]);
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/** Classify a driver / knex error. Looks through `cause` and AggregateError (net.connect to several addresses). */
export function classifyError(err: unknown, depth = 0): ErrorKind {
  if (err == null || depth > 4) return 'other';
  if (err instanceof StorageBusyError) return 'busy';
  if (err instanceof StorageUnavailableError) return 'unavailable';
  const code = errorCode(err);
  if (code !== undefined) {
    if (SQLITE_BUSY_CODES.has(code) || PG_BUSY_CODES.has(code)) return 'busy';
    if (PG_TIMEOUT_CODES.has(code)) return 'timeout';
    if (SQLITE_UNAVAILABLE_CODES.has(code) || NET_CODES.has(code) || PG_UNAVAILABLE_CODES.has(code)) {
      return 'unavailable';
    }
    if (/^08/.test(code)) return 'unavailable'; // SQLSTATE class 08: connection exception
    // SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation): the data, not the server.
    if (/^2[23][0-9A-Z]{3}$/.test(code) || SQLITE_PERMANENT_CODES.has(code)) return 'permanent';
  }
  if (err instanceof Error) {
    if (err.name === 'KnexTimeoutError') return 'unavailable';
    if (UNAVAILABLE_MESSAGES.some((re) => re.test(err.message))) return 'unavailable';
    if (/SQLITE_BUSY|SQLITE_LOCKED|database is locked/.test(err.message)) return 'busy';
    if (/SQLITE_READONLY|read-only transaction/.test(err.message)) return 'unavailable';
    if (/SQLITE_CONSTRAINT|SQLITE_MISMATCH|SQLITE_TOOBIG/.test(err.message)) return 'permanent';
  }
  if (err instanceof AggregateError) {
    for (const e of err.errors) {
      const k = classifyError(e, depth + 1);
      if (k !== 'other') return k;
    }
  }
  if (err instanceof Error && err.cause !== undefined) return classifyError(err.cause, depth + 1);
  return 'other';
}

export interface RetryPolicy {
  /** Total tries, the first one included. */
  attempts: number;
  /** Delay before the 2nd try; doubles each time… */
  minDelayMs: number;
  /** …up to this. */
  maxDelayMs: number;
  /**
   * An attempt that itself lasted this long before failing busy is not retried: the driver's busy handler
   * (SQLite's busy_timeout) already waited for the lock, and another try would wait as long again. Only what
   * fails fast (SQLite's deadlock avoidance returns SQLITE_BUSY at once) is retried.
   */
  noRetryAfterWaitMs?: number;
}

/** Default for batch writes and reads: 5 tries, 10 ms → 200 ms (≈ 0.3 s of waiting in all, plus busy_timeout). */
export const DEFAULT_BUSY_RETRY: RetryPolicy = Object.freeze({ attempts: 5, minDelayMs: 10, maxDelayMs: 200 });

export function backoffDelay(policy: RetryPolicy, retry: number): number {
  const base = Math.min(policy.maxDelayMs, policy.minDelayMs * 2 ** Math.max(0, retry - 1));
  // "Equal jitter": half fixed, half random, so two processes that collided do not collide again in step.
  return Math.round(base / 2 + (Math.random() * base) / 2);
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Run `fn`, retrying busy errors with exponential backoff; map the final failure onto the typed errors.
 * `onRetry` is told about each retry (for a log line or a metric).
 */
export async function withBusyRetry<T>(
  operation: string,
  policy: RetryPolicy,
  fn: () => Promise<T>,
  onRetry?: (attempt: number, delayMs: number, err: unknown) => void,
): Promise<T> {
  const attempts = Math.max(1, Math.floor(policy.attempts));
  for (let attempt = 1; ; attempt++) {
    const started = performance.now();
    try {
      return await fn();
    } catch (err) {
      const kind = classifyError(err);
      if (kind === 'unavailable') {
        throw err instanceof StorageUnavailableError ? err : new StorageUnavailableError(operation, err);
      }
      if (kind === 'timeout') throw new StorageBusyError(operation, attempt, err);
      if (kind !== 'busy') throw err;
      const waited = policy.noRetryAfterWaitMs !== undefined && performance.now() - started >= policy.noRetryAfterWaitMs;
      if (attempt >= attempts || waited) {
        throw err instanceof StorageBusyError ? err : new StorageBusyError(operation, attempt, err);
      }
      const delay = backoffDelay(policy, attempt);
      onRetry?.(attempt, delay, err);
      await sleep(delay);
    }
  }
}

/**
 * The driver's own words, without the SQL knex prefixes to them (`<statement> - <message>`: ≈ 600 characters
 * for a batch upsert), cut to `max` characters: for logs and /health.
 */
export function shortErrorMessage(err: unknown, max = 160): string {
  let m = errorMessage(err);
  const cut = m.lastIndexOf(' - ');
  if (cut >= 0 && /^\s*(insert|update|delete|select|with|begin|commit|create|alter|drop)\b/i.test(m)) m = m.slice(cut + 3);
  m = m.replace(/\s+/g, ' ').trim();
  return m.length > max ? `${m.slice(0, max - 1)}…` : m;
}

/** Map an error onto the typed errors without retrying (busy → StorageBusyError after one attempt). */
export function toStorageError(operation: string, err: unknown): unknown {
  switch (classifyError(err)) {
    case 'unavailable':
      return err instanceof StorageUnavailableError ? err : new StorageUnavailableError(operation, err);
    case 'busy':
    case 'timeout':
      return err instanceof StorageBusyError ? err : new StorageBusyError(operation, 1, err);
    default:
      return err;
  }
}
