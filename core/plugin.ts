import type { Static, TSchema } from '@sinclair/typebox';
import type { Knex } from 'knex';
import type { Logger } from './log';
import type { MetricsFactory } from './metricsRegistry';
import type { ServerHooks } from './hooks';
import type { TapTiming } from './timing';

/**
 * Hooks that plugins publish, by plugin name. Built-in plugins add themselves here by declaration merging,
 * and a custom plugin can too:
 * `declare module 'codexdns' { interface PluginHookRegistry { geoblock: { blocked: SyncHook<[string]> } } }`.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface PluginHookRegistry {}

export type PluginRole = 'guard' | 'answers';

/** Facts about the server block a plugin instance belongs to. */
export interface BlockInfo {
  /** `block0`, `block1`, … in file order: a metrics label. */
  readonly name: string;
  readonly zones: readonly string[];
  readonly listen: readonly string[];
  /** The folder of the configuration file: relative paths resolve against it. */
  readonly configDir: string;
  readonly configFile: string;
  /** Local addresses the block's listeners are bound to (after wildcard expansion), once listening. */
  localAddresses(): readonly string[];
}

/** What a plugin's `check` may use: reading, never binding or writing. */
export interface CheckContext {
  /** Resolves a path from the configuration against the configuration file's folder. */
  resolvePath(p: string): string;
  /** The server block's `listen` entries as written. */
  readonly listen: readonly string[];
}

/** An option written the old way: its path (`workers`, `priority.high`) and what to write instead. */
export interface DeprecatedOption {
  readonly option: string;
  readonly message: string;
}

/** Phase one of setup: publish hooks before anyone taps. */
export interface DeclareApi {
  readonly block: BlockInfo;
}

/** The lines the storage layer logs (what `Logger` and the storage layer's own logger have in common). */
export interface StorageLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/**
 * The open database as plugins use it. Declared here, not taken from storage/, so the core names no storage
 * module; storage/open's `Storage` extends it (with the migrator and close, which belong to the server), so
 * the compiler keeps the two in step.
 */
export interface StorageHandle {
  /** Writes (batches, prune, migrations). SQLite: a single connection. */
  readonly writer: Knex;
  /** Reads for the API. SQLite: separate connections; PostgreSQL: the same instance as `writer`. */
  readonly reader: Knex;
  readonly client: 'sqlite3' | 'pg';
  /** Bound parameters allowed in one statement (SQLite 999 or 32766 depending on the build; PostgreSQL 65535). */
  readonly maxParams: number;
  /**
   * SQLite: how long one statement already waits for another process's lock (busy_timeout) before failing
   * busy. A retry after such a wait would wait as long again: callers retry at once only what failed fast.
   */
  readonly busyTimeoutMs?: number;
  /** SQLite: the absolute path of the database file. */
  readonly filename?: string;
  readonly log: StorageLog;
  /**
   * SQLite: whether the file open is still the one at `filename` (same device and inode). A file deleted or
   * replaced while open takes every later write with it, silently: when that happened, the connections are
   * reopened on the path (a new file), migrated, it is logged once, and this resolves true — what the caller
   * wrote since its previous check went to the old file, and is for it to write again. PostgreSQL: false.
   * Cheap (one stat): meant for a timer, not for every write.
   */
  checkFile(): Promise<boolean>;
}

/** Storage for plugins that need it; opened on first use, shared by the process. */
export interface StorageAccess {
  /** The open database (knex writer/reader, limits); rejects while the database is unreachable. */
  open(): Promise<StorageHandle>;
  /** The knex instance for writes (and for reads on PostgreSQL). */
  writer(): Promise<Knex>;
  /** A separate connection for reads so API reads never wait behind batch writes (SQLite). */
  reader(): Promise<Knex>;
  /** Runs a plugin's own migrations from `dir`, kept in a table of its own so removing the plugin never blocks start-up. */
  migrate(dir: string, plugin: string): Promise<void>;
  /** The storage's health, for `/health`. */
  health(): Promise<{ ok: boolean; error?: string; latencyMs: number }>;
}

/** Timers that are cancelled when the chain that made them shuts down or is replaced. */
export interface PluginTimers {
  setTimeout(fn: () => void, ms: number): NodeJS.Timeout;
  setInterval(fn: () => void, ms: number): NodeJS.Timeout;
  clear(timer: NodeJS.Timeout): void;
}

/** Server-wide facts that observability plugins read. */
export interface ServerIntrospection {
  /** Per-plugin timing slots of this chain's taps; the metrics plugin binds its observers to them. */
  tapTimings(): readonly TapTiming[];
  /** Counters of the wire layer (malformed packets dropped, TCP connections, …). */
  wireStats(): WireStats;
  /** True once every DNS listener is up. */
  ready(): boolean;
  /** Each plugin's options in this block, by name (read-only), for a plugin that defaults from another's. */
  pluginOptions(name: string): Readonly<Record<string, unknown>> | undefined;
}

export interface WireStats {
  readonly udpReceived: number;
  readonly tcpReceived: number;
  readonly dropped: Readonly<Record<string, number>>;
  readonly formerr: number;
  readonly notimp: number;
  readonly badvers: number;
  /** Queries for a zone no block serves (answered REFUSED by the core). */
  readonly refusedZone: number;
  /** Meta queries refused by the core (zone transfers). */
  readonly refusedMeta: number;
  /** Replies that could not be sent (the send failed), by transport. */
  readonly sendErrors: Readonly<Record<'udp' | 'tcp', number>>;
  readonly tcpConnections: number;
  readonly tcpConnectionsRefused: number;
  /** TCP connections the server closed, by reason (evicted, per_client, read_timeout, idle_timeout, drain_timeout, half_closed). */
  readonly tcpClosed: Readonly<Record<string, number>>;
  /** TCP connections not being read now because their unsent replies passed `max_unsent`. */
  readonly tcpPaused: number;
  /** Times a TCP connection was paused for that reason. */
  readonly tcpPauses: number;
  /** Times a TCP connection stopped being read because `max_inflight` of its queries were in flight. */
  readonly tcpInflightFull: number;
  readonly inFlight: number;
}

/** What `setup` receives: everything a plugin may use, handed in rather than taken from globals. */
export interface PluginApi<Own extends object = object> {
  /** The plugin's name as written in Corefile.yaml. */
  readonly name: string;
  /** Position in the chain (0 = first). */
  readonly index: number;
  readonly hooks: ServerHooks;
  /** The hooks this plugin published in `declare`. */
  readonly own: Own;
  /** Another plugin's published hooks, or undefined when that plugin is not in this block's chain. */
  hooksOf<K extends keyof PluginHookRegistry>(plugin: K): PluginHookRegistry[K] | undefined;
  readonly block: BlockInfo;
  readonly log: Logger;
  readonly metrics: MetricsFactory;
  readonly storage: StorageAccess;
  readonly timers: PluginTimers;
  readonly server: ServerIntrospection;
  /** Resolves a path from the configuration against the configuration file's folder. */
  resolvePath(p: string): string;
  /**
   * Keeps `create()`'s result across reloads while this plugin's options are unchanged: the cache keeps its
   * entries, clienttrack its queue. `dispose` runs when the state is finally dropped.
   */
  retain<T>(key: string, create: () => T, dispose?: (value: T) => void | Promise<void>): T;
  /**
   * One value per plugin name and `key` for the whole server — every block, across reloads, whatever the options:
   * what instances of this plugin hand to each other (clienttrack's tracker to a successor with new options, the
   * metrics HTTP listener). `create()` runs for the first chain that asks; `dispose` once no live chain asked for it
   * (the plugin was removed from every block, or the server stopped). Not for per-query state: it is a lookup.
   */
  shared<T>(key: string, create: () => T, dispose?: (value: T) => void | Promise<void>): T;
}

/**
 * A plugin: its name, its option schema (defaults included; the schema is also what `codexdns schema` prints),
 * an optional first phase that publishes hooks, and `setup`, which taps hooks (webpack's `apply(compiler)`).
 */
export interface PluginDefinition<S extends TSchema = TSchema, Own extends object = object> {
  readonly name: string;
  readonly description?: string;
  readonly options: S;
  /**
   * What the plugin does in the chain, for `codexdns validate`'s order check: a `guard` (acl, a query rate
   * limit) listed after a plugin that `answers` (cache) would be skipped for what that plugin answers.
   */
  readonly role?: PluginRole | ((options: Static<S>) => PluginRole | undefined);
  /**
   * Plugins that must be in the same server block (by name: a built-in's, or a custom plugin's `name`).
   * `codexdns validate` and start-up refuse a block without one, at this plugin's line; they are set up
   * before this plugin, so `api.hooksOf(name)` is never undefined for them and their taps are in place.
   */
  readonly requires?: readonly string[];
  /**
   * Plugins this one uses when the block has them (`api.hooksOf(name)` may be undefined): when present they
   * are set up before this plugin, so a hook of theirs it calls in `setup` answers the same whatever the list
   * order. A cycle through `requires`/`uses` is a configuration error.
   */
  readonly uses?: readonly string[];
  /**
   * Checks of the options that a schema cannot express (a CIDR that parses, an address with a valid port, a time
   * of day), without side effects: no socket, no timer, no storage. `codexdns validate` and start-up both run it,
   * so validate reports everything start-up would refuse. Throw `OptionError(option, message)`: it is reported
   * at that option's line and column.
   */
  check?(options: Static<S>, context: CheckContext): void;
  /**
   * Options kept so old configuration files still work, but replaced by something else (another plugin's line):
   * `codexdns validate` and start-up report each as a warning at that option's line and column, with the message
   * saying what to write instead. Without side effects, like `check`.
   */
  deprecated?(options: Static<S>): readonly DeprecatedOption[];
  /**
   * Phase one: the hooks (or service objects) this plugin publishes. It gets the options so a published service
   * is configured before any plugin's setup runs, whatever the chain order (a consumer listed before the plugin
   * it uses still finds it ready). The chain always passes them; a test that declares a plugin's hooks by hand
   * may leave them out, so a plugin reading them falls back to its defaults.
   */
  declare?(api: DeclareApi, options?: Static<S>): Own;
  setup(api: PluginApi<Own>, options: Static<S>): void | Promise<void>;
}

/** Identity helper that gives a plugin definition its types. */
export function definePlugin<S extends TSchema, Own extends object = object>(def: PluginDefinition<S, Own>): PluginDefinition<S, Own> {
  return def;
}

/** A definition with its types erased, as the loader holds it (`setup` is a method, so this accepts any plugin). */
export type AnyPluginDefinition = PluginDefinition<TSchema, object>;
