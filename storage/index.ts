// The storage layer: see storage/README.md.
export { openStorage } from './open';
export type { Storage, StorageConfig, StorageHealth, OpenStorageOptions, SqliteSynchronous } from './open';
export { Migrator, CORE_SET, DEFAULT_LOCK_RETRY, defaultMigrationsDir, findPackageRoot } from './migrator';
export type { MigratorOptions, MigrationSet, MigrationSetStatus, MigrationStatus } from './migrator';
export {
  StorageError,
  StorageBusyError,
  StorageUnavailableError,
  MigrationLockedError,
  DEFAULT_BUSY_RETRY,
  classifyError,
  withBusyRetry,
} from './errors';
export type { StorageLogger, RetryPolicy, ErrorKind } from './errors';
