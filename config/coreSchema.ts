import { Type, Duration } from './types';

/** Options of one server block, beside its plugin list. */
export const ServerBlockSchema = Type.Object({
  listen: Type.Array(Type.String({ pattern: '^(udp|tcp)://', description: 'udp://HOST:PORT or tcp://HOST:PORT; [::] and 0.0.0.0 are wildcards' }), { minItems: 1 }),
  zones: Type.Array(Type.String({ minLength: 1 }), { default: ['.'], minItems: 1, description: 'Zones this block answers; the block with the longest matching zone answers a query' }),
  edns_size: Type.Integer({ minimum: 512, maximum: 4096, default: 1232, description: 'Our EDNS UDP payload size (RFC 6891); 1232 avoids fragmentation' }),
  tcp: Type.Object({
    idle_timeout: Duration(10_000, 'Close a TCP connection that completed no message for this long (and has nothing in flight)'),
    max_connections: Type.Integer({ minimum: 1, default: 1000, description: 'Open TCP connections; at the limit the one idle longest is closed to admit a new one' }),
    max_inflight: Type.Integer({ minimum: 1, default: 64, description: 'Queries in flight per TCP connection; reading pauses beyond it' }),
    read_timeout: Duration(3_000, 'A message must arrive whole within this long of its first byte, or the connection is closed'),
    max_per_client: Type.Integer({ minimum: 1, default: 64, description: 'TCP connections one source address may hold open' }),
    max_unsent: Type.Integer({ minimum: 1024, default: 131072, description: 'Bytes of unsent replies above which a connection stops being read until they drain' }),
    drain_timeout: Duration(5_000, 'Close a connection whose unsent replies stay above max_unsent for this long'),
  }, { default: {} }),
  plugins: Type.Array(Type.Unknown(), { default: [], description: 'The chain, in order: each entry is `name: options` or `use: path-or-package` with `options`' }),
});

export const StorageSchema = Type.Object({
  client: Type.Union([Type.Literal('sqlite3'), Type.Literal('pg')], { default: 'sqlite3' }),
  connection: Type.Union([Type.String(), Type.Object({}, { additionalProperties: true })], { default: { filename: './data/codexdns.sqlite' } }),
  synchronous: Type.Union([Type.Literal('off'), Type.Literal('normal'), Type.Literal('full')], { default: 'normal', description: 'SQLite synchronous level (NORMAL: WAL stays consistent on power loss)' }),
  busy_timeout: Duration(5_000, 'How long SQLite waits on a locked database before retrying'),
  pool: Type.Optional(Type.Object({ min: Type.Optional(Type.Integer({ minimum: 0 })), max: Type.Optional(Type.Integer({ minimum: 1 })) })),
  schema: Type.Optional(Type.String({ description: 'PostgreSQL schema (search path) holding the tables' })),
  acquire_timeout: Duration(10_000, 'How long to wait for a pooled connection before counting the database unavailable'),
  lock_timeout: Duration(5_000, 'PostgreSQL: a write waiting this long for another session\'s lock fails and is retried later (0: wait for ever)'),
  statement_timeout: Duration(30_000, 'PostgreSQL: the longest any one statement may run (0: no bound)'),
}, { default: {} });

export const LogSchema = Type.Object({
  level: Type.Union([Type.Literal('debug'), Type.Literal('info'), Type.Literal('warn'), Type.Literal('error')], { default: 'info' }),
  format: Type.Union([Type.Literal('text'), Type.Literal('json')], { default: 'text' }),
}, { default: {} });

export const TopSchema = Type.Object({
  servers: Type.Array(Type.Unknown(), { minItems: 1 }),
  storage: StorageSchema,
  log: LogSchema,
  shutdown_grace: Duration(5_000, 'On SIGTERM, how long in-flight queries may take to finish'),
  reload: Type.Object({ watch: Type.Boolean({ default: true, description: 'Reload when the file changes on disk' }), debounce: Duration(500) }, { default: {} }),
});
