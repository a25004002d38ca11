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
export { CodexServer, type ServerOptions } from './core/server';
/** tapable's hook classes, so a plugin publishing hooks uses the same tapable as the core. */
export { SyncHook, SyncBailHook, SyncWaterfallHook, AsyncSeriesHook, AsyncSeriesBailHook, AsyncSeriesWaterfallHook, HookMap } from 'tapable';
export { RepeatingWarning } from './core/primitives/rateLimitedLog';
/** The client matcher acl uses: networks and addresses, IPv4 and IPv6 (IPv4-mapped matches IPv4), zones ignored. */
export { CidrSet, CidrParseError } from './plugins/pkg/cidr';
export type { CheckContext } from './core/plugin';
