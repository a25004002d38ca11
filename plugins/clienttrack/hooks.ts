/**
 * What clienttrack publishes (`api.hooksOf('clienttrack')`): new clients for discovery, the one writer of the
 * `clients` table for discovery's results, identities for name- and MAC-based plugins, its queue's metrics, and
 * the reads of the table other plugins need (the API's list, discovery's scans). The table is clienttrack's: no
 * other plugin queries it.
 */
import type { AsyncSeriesBailHook, SyncBailHook, SyncHook } from 'tapable';

/** Told to the `newClient` hook when a client is seen for the first time (the discovery plugin taps it). */
export interface NewClientEvent {
  readonly ip: string;
  /** Wall-clock epoch milliseconds of the query that revealed the client. */
  readonly seenAt: number;
}

/**
 * A discovery result (or progress report) for one client, handed to clienttrack's `applyDiscovery` hook.
 * It travels through the tracking queue (high priority) and the same batched writer as every other update:
 * there is one writer of the `clients` table.
 */
export interface DiscoveryUpdate {
  readonly ip: string;
  readonly hostname?: string;
  readonly mac?: string;
  readonly vendor?: string;
  /** The method that found the hostname: dhcp, arp, rdns, netbios, mdns. */
  readonly method?: string;
  /** Why the attempt failed (stored in `last_error`); absent on success. */
  readonly error?: string;
  /**
   * true: discovery of this client is over (success or final failure): `discovering` becomes false, and
   * `discovered_at` is set on success. false: still discovering (deferred, will retry): `discovering` stays
   * true and only the fields given (and `error`) are stored.
   */
  readonly done: boolean;
}

/**
 * Who a client is, as discovery found it: for plugins that answer or decide by device (names for devices, filter
 * groups by MAC or name). A field left out is unknown or unchanged; merge, do not overwrite with it.
 */
export interface ClientIdentity {
  readonly ip: string;
  readonly hostname?: string;
  readonly mac?: string;
  readonly vendor?: string;
  /** The method that found the hostname (dhcp, arp, rdns, netbios, mdns). */
  readonly method?: string;
  /** Discovery of this client has not finished (a name given now may still change). */
  readonly discovering: boolean;
  /** Wall-clock epoch milliseconds when this was learned (or, loaded from the database, the client's last query). */
  readonly at: number;
}

/** A stored client (a `clients` row): times are wall-clock epoch milliseconds. */
export interface ClientRecord {
  ip: string;
  hostname: string | null;
  mac: string | null;
  vendor: string | null;
  method: string | null;
  discovering: boolean;
  firstSeen: number;
  lastSeen: number;
  queryCount: number;
  discoveredAt: number | null;
  lastError: string | null;
}

export type ClientSort = 'ip' | 'hostname' | 'last_seen' | 'query_count' | 'first_seen';

/** A page of the stored clients (`listClients`). */
export interface ClientListQuery {
  offset?: number;
  /** Default 50, at most 1000 (more is cut to 1000). */
  limit?: number;
  sort?: ClientSort;
  order?: 'asc' | 'desc';
  /** Substring of the ip, hostname or mac (case-insensitive). */
  search?: string;
}

export interface ClientListResult {
  /** Clients matching `search`, all pages. */
  total: number;
  rows: ClientRecord[];
}

/** The clients whose names are due again (`staleClients`). */
export interface StaleClientsQuery {
  /** Discovery finished before this (wall ms). */
  readonly discoveredBefore: number;
  /** And the client was seen since this (wall ms). */
  readonly seenSince: number;
  readonly limit: number;
}

/** The tracking queue and writer, as numbers (for the metrics plugin, the API and the dashboard). */
export interface QueueMetrics {
  /** Whether the queue is split by priority (`priority:` option) or one FIFO. */
  readonly priority: boolean;
  readonly workers: number;
  /** Jobs running now (in flight). */
  readonly busy: number;
  readonly depth: { readonly high: number; readonly low: number; readonly total: number };
  readonly capacity: { readonly high: number; readonly low: number; readonly total: number };
  /** Always: submitted = processed + failed + dropped + queued + inFlight. */
  readonly submitted: number;
  readonly processed: number;
  readonly failed: number;
  readonly dropped: number;
  readonly droppedHigh: number;
  readonly droppedLow: number;
  readonly queued: number;
  readonly inFlight: number;
  /** Jobs that had to wait in the queue, by class (jobs handed straight to an idle worker are not counted). */
  readonly enqueuedHigh: number;
  readonly enqueuedLow: number;
  /** Jobs finished per second over the last `rateWindowSeconds`. */
  readonly ratePerSecond: number;
  readonly rateWindowSeconds: number;
  /** The write side: pending rows (one per client) and the batches written. */
  readonly writer: WriterMetrics;
  readonly clients: {
    /** Clients in the in-memory index. */
    readonly indexed: number;
    readonly capacity: number;
    /** Clients pushed out of the index because it was full (`max_clients`). */
    readonly evicted: number;
    /** Clients seen for the first time since start. */
    readonly new: number;
    /** Indexed clients whose discovery has not finished. */
    readonly discovering: number;
    /** The index has been loaded from the database (until then jobs wait, up to `index_wait`). */
    readonly indexLoaded: boolean;
  };
}

export interface WriterMetrics {
  /** Rows (distinct clients) waiting for the next batch; bounded by `max_pending`. */
  readonly pending: number;
  readonly pendingCapacity: number;
  /** Queries merged into the pending rows (what their query_count will add). */
  readonly pendingQueries: number;
  /** The configured batch size. */
  readonly batch: number;
  readonly batches: number;
  readonly failedBatches: number;
  readonly rowsWritten: number;
  /** Queries carried by the rows written (the sum of what was added to query_count). */
  readonly queriesWritten: number;
  readonly lastBatchSize: number;
  readonly avgBatchSize: number;
  readonly lastWriteMs: number;
  readonly avgWriteMs: number;
  readonly maxWriteMs: number;
  /**
   * Updates (and the queries they carried) discarded: the pending buffer was full while the database was
   * failing, a batch was rejected as invalid, or shutdown ran out of time.
   */
  readonly droppedUpdates: number;
  readonly droppedQueries: number;
  /** Of the dropped updates: rows the schema refused (each alone, after splitting their batch). */
  readonly rejectedRows: number;
  /** Of the dropped updates: rows of batches that failed with an unrecognised error for `giveUpMs`. */
  readonly abandonedRows: number;
  /** Rows of the write running now. */
  readonly inFlightRows: number;
  /** How long the running write has been running (0: none). */
  readonly writeAgeMs: number;
  /** The running write is older than the flush interval (a lock or a hung server holds it). */
  readonly stalled: boolean;
  /** Whether the last write succeeded, and the last error when it did not (null again once a write succeeds). */
  readonly storageOk: boolean;
  readonly lastError: string | null;
  /** How the last error was classified: busy, timeout, unavailable, permanent, other. */
  readonly lastErrorKind: string | null;
  readonly consecutiveFailures: number;
  /** Milliseconds until the next write attempt after a failure (0 when not backing off). */
  readonly retryInMs: number;
  /** Clients removed by retention since start. */
  readonly pruned: number;
}

/** The hooks clienttrack publishes (`api.hooksOf('clienttrack')`). */
export interface ClienttrackHooks {
  /**
   * A client was seen for the first time. Called from a tracking worker (never on the answer path), at most
   * once per new client; the client's row is written with `discovering = true` only because something tapped
   * this hook. Taps must be O(1): enqueue, do not probe here.
   */
  readonly newClient: SyncHook<[NewClientEvent]>;
  /** Call it to report a discovery result; clienttrack taps it and queues the update at high priority. */
  readonly applyDiscovery: SyncHook<[DiscoveryUpdate]>;
  /** Call it (`.call()`) for a snapshot of the queue and writer numbers; clienttrack taps it. */
  readonly queueMetrics: SyncBailHook<[], QueueMetrics>;
  /**
   * A discovery result carrying a name or a MAC, or ending a client's discovery (`discovering: false`, perhaps
   * with no field at all), was accepted for a client: fired when clienttrack takes the update, before it is
   * written; also when a client left `discovering` by an earlier run is settled without discovery. Fired only
   * on the chain that serves. Taps must be O(1): keep it in a table, do no I/O; a tap that throws is logged.
   */
  readonly identified: SyncHook<[ClientIdentity]>;
  /**
   * Clients that retention removed from the index (their addresses), after their rows were deleted: forget what
   * you keep about them. A tap that throws is logged; the prune still counts.
   */
  readonly forgotten: SyncHook<[readonly string[]]>;
  /**
   * Call it (`.promise(limit)`) at startup for the identities already stored (the `limit` most recently seen
   * clients with a name or MAC, among the `max_clients` most recently seen), most recent first, to fill an
   * in-memory table; clienttrack taps it. Rejects while the database is unreachable.
   */
  readonly loadIdentities: AsyncSeriesBailHook<[number], ClientIdentity[]>;
  /**
   * Call it (`.promise(query)`) for a page of the stored clients, e.g. for an HTTP API. Reads go to the read
   * connection and fail fast (two quick tries) when the database is busy or unreachable: the promise rejects.
   */
  readonly listClients: AsyncSeriesBailHook<[ClientListQuery], ClientListResult>;
  /** Call it (`.promise(ip)`) for one stored client; resolves null when there is none. Rejects like `listClients`. */
  readonly getClient: AsyncSeriesBailHook<[string], ClientRecord | null>;
  /**
   * Call it (`.promise(limit)`) for up to `limit` addresses whose row says `discovering` (first seen first): what a
   * discovery run left unfinished (a restart, a full queue). Rejects while the database is unreachable.
   */
  readonly discoveringClients: AsyncSeriesBailHook<[number], string[]>;
  /** Call it (`.promise(query)`) for addresses whose names are old (oldest first), to discover them again. */
  readonly staleClients: AsyncSeriesBailHook<[StaleClientsQuery], string[]>;
}

declare module '../../core/plugin' {
  interface PluginHookRegistry {
    clienttrack: ClienttrackHooks;
  }
}
