/** The public API for plugin authors: `import { definePlugin, Type, Duration } from 'codexdns'`. */
export { definePlugin } from './core/plugin';
export type {
  PluginDefinition, PluginApi, DeclareApi, BlockInfo, PluginHookRegistry, PluginRole, StorageAccess, PluginTimers,
  ServerIntrospection, WireStats, AnyPluginDefinition, DeprecatedOption,
} from './core/plugin';
export type { ServerHooks, LifecycleInfo } from './core/hooks';
export { QueryContext, type ClientInfo } from './core/context';
export { DnsResponse, type ExtendedError } from './core/response';
export type { Logger, LogFields } from './core/log';
export type { MetricsFactory } from './core/metricsRegistry';
export type { TapTiming } from './core/timing';
export { Rcode, RrType, Flag } from './core/wire/constants';
export { Type, Duration, type Static, type TSchema } from './config/types';
export { OptionError } from './config/errors';
export { CodexServer, type ServerOptions } from './server/server';
/** tapable's hook classes, so a plugin publishing hooks uses the same tapable as the core. */
export {
  SyncHook, SyncBailHook, SyncWaterfallHook, SyncLoopHook, AsyncSeriesHook, AsyncSeriesBailHook, AsyncSeriesWaterfallHook,
  AsyncSeriesLoopHook, AsyncParallelHook, AsyncParallelBailHook, HookMap, MultiHook,
} from 'tapable';
/** TypeBox's and tapable's types, so an author's `declaration: true` build can name what definePlugin infers. */
export type * from './core/vendorTypes';
/**
 * What the built-in plugins publish. Exporting these also brings each hooks.ts's `PluginHookRegistry` entry
 * (declaration merging) into every program that imports codexdns: `api.hooksOf('clienttrack')` is typed.
 */
export type {
  ClienttrackHooks, ClientIdentity, NewClientEvent, DiscoveryUpdate, QueueMetrics, WriterMetrics, ClientRecord, ClientListQuery, ClientListResult, ClientSort, StaleClientsQuery,
} from './plugins/clienttrack/hooks';
export type {
  DiscoveryHooks, DiscoveryRequest, DiscoveryDenial, DiscoveryOutcome, DiscoveryMetrics, DiscoveryReport, LatencyStats, MethodStats, MethodName,
} from './plugins/discovery/hooks';
export type { BreakerHooks, BreakerSnapshot } from './plugins/breaker/hooks';
export type { ForwardHooks, ForwardEndpoint } from './plugins/forward/hooks';
export type { WorkerpoolHooks, WorkerPools, ResolvedPoolSettings, PoolJobs, PoolSettings, WorkerPool } from './plugins/workerpool/hooks';
export type { PriorityHooks, PriorityQueues, PrioritySettings, JobPriority, JobQueue } from './plugins/priority/hooks';
export type { FilterHooks, FilterBlockedEvent, FilterGroupStatus, FilterSourceStatus, FilterStatus, FilterWhyRequest, FilterWhyResult } from './plugins/filter/hooks';
export type { MetricsHooks, HttpRoute, HttpRouteMethod, HttpRouteRequest, HttpRouteTable, ApiClient } from './plugins/metrics/hooks';
export { RepeatingWarning } from './core/primitives/rateLimitedLog';
/** The client matcher acl uses: networks and addresses, IPv4 and IPv6 (IPv4-mapped matches IPv4), zones ignored. */
export { CidrSet, CidrParseError } from './plugins/pkg/cidr';
export type { CheckContext } from './core/plugin';
