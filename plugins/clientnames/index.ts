import { OptionError } from '../../config/errors';
import { Type } from '../../config/types';
import { definePlugin } from '../../core/plugin';
import type { ClientIdentity } from '../clienttrack/hooks';
import type {} from '../metrics/hooks';
import { Answerer } from './answer';
import { PRIVATE_REVERSE_ZONES, canonicalIp, isHostLabel, zoneName } from './labels';
import { bindMetrics } from './metrics';
import { NameTable } from './nameTable';

export { NameTable } from './nameTable';
export { hostLabel, reverseName, addressOfReverse, PRIVATE_REVERSE_ZONES } from './labels';

export const options = Type.Object({
  zones: Type.Array(Type.String(), { minItems: 1, default: ['home.arpa.'], description: 'Zones the devices are named in (device.ZONE); the first names them in PTR answers' }),
  reverse_zones: Type.Array(Type.String(), {
    default: [...PRIVATE_REVERSE_ZONES],
    description: 'Reverse zones whose PTR questions are answered for named devices (others in them go on down the chain)',
  }),
  ttl: Type.Integer({ minimum: 0, maximum: 86400, default: 60, description: 'TTL of A, AAAA and PTR answers (seconds)' }),
  negative_ttl: Type.Integer({ minimum: 0, maximum: 86400, default: 10, description: 'SOA TTL and MINIMUM: how long NXDOMAIN / NODATA may be cached (seconds)' }),
  max_names: Type.Integer({ minimum: 1, default: 10000, description: 'Client addresses kept in the name table; the least recently identified are evicted (and counted)' }),
  hosts: Type.Unsafe<Record<string, string | string[]>>({
    type: 'object',
    additionalProperties: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] },
    default: {},
    description: 'Static names for devices that announce nothing: { label: address or [addresses] }',
  }),
});

export type ClientnamesOptions = typeof options.static;

const LOAD_RETRY_MIN_MS = 1000;
const LOAD_RETRY_MAX_MS = 30_000;

function zonesOption(list: readonly string[], option: string, reverse: boolean): string[] {
  return list.map((text, i) => {
    const z = zoneName(text);
    if (z === undefined) throw new OptionError(`${option}[${i}]`, `${text} is not a domain name`);
    if (reverse && !z.endsWith('.in-addr.arpa') && !z.endsWith('.ip6.arpa') && z !== 'in-addr.arpa' && z !== 'ip6.arpa') {
      throw new OptionError(`${option}[${i}]`, `${text} is not a reverse zone (under in-addr.arpa or ip6.arpa)`);
    }
    if (!reverse && /(^|\.)(in-addr|ip6)\.arpa$/.test(z)) {
      throw new OptionError(`${option}[${i}]`, `${text} is a reverse zone: list it in reverse_zones`);
    }
    return z;
  });
}

function hostsOption(hosts: Readonly<Record<string, string | string[]>>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [key, value] of Object.entries(hosts)) {
    const label = key.toLowerCase();
    if (!isHostLabel(label)) throw new OptionError(`hosts.${key}`, `${key} is not a host label (letters, digits and inner hyphens, at most 63): write the name without the zone`);
    const list = typeof value === 'string' ? [value] : value;
    if (list.length === 0) throw new OptionError(`hosts.${key}`, 'needs at least one address');
    for (const a of list) if (canonicalIp(a) === undefined) throw new OptionError(`hosts.${key}`, `${a} is not an IP address`);
    out.set(label, list);
  }
  return out;
}

/**
 * `clientnames`: every device discovery has named answers as NAME.home.arpa (A, AAAA) and in the private reverse
 * zones (PTR), from an in-memory table that clienttrack's hooks keep current. See README.md.
 */
export default definePlugin({
  name: 'clientnames',
  description: 'Answers A, AAAA and PTR for the clients discovery has named (NAME.home.arpa), and for static hosts',
  role: 'answers',
  // Names come from clienttrack (without it only `hosts:` is answered); the dashboard's client list from metrics.
  uses: ['clienttrack', 'metrics'],
  options,
  setup(api, o) {
    const zones = zonesOption(o.zones, 'zones', false);
    const reverseZones = zonesOption(o.reverse_zones, 'reverse_zones', true);
    const hosts = hostsOption(o.hosts);
    const key = api.block.name;
    // The table of each server block that serves now, for a successor with other options.
    const serving = api.shared('serving', () => new Map<string, NameTable>());
    const table = api.retain(
      'table',
      () => new NameTable(o.max_names),
      (t) => {
        if (serving.get(key) === t) serving.delete(key);
      },
    );
    table.setStatic(hosts);
    const answerer = new Answerer({ zones, reverseZones, ttl: o.ttl, negativeTtl: o.negative_ttl }, table);
    api.hooks.query.tap('clientnames', (ctx) => answerer.answer(ctx));
    const metrics = bindMetrics(api.metrics, api.block.name, table, answerer.stats);

    const firstZone = zones[0];
    api.hooksOf('metrics')?.apiClient.tap('clientnames', (client) => {
      const label = table.labelOf(client.ip);
      // Every block's taps see the client in turn: a block that has no name for it keeps another block's.
      if (label === undefined) return client.dnsName === undefined ? { ...client, dnsName: null } : client;
      return { ...client, dnsName: `${label}.${firstZone}` };
    });

    const track = api.hooksOf('clienttrack');
    if (track === undefined) {
      api.log.warn('clienttrack is not in this server block: only the hosts: entries are answered');
    } else {
      track.identified.tap('clientnames', (id: ClientIdentity) => table.apply(id));
      track.forgotten.tap('clientnames', (ips) => table.forget(ips));
    }

    let stopped = false;
    let retryMs = LOAD_RETRY_MIN_MS;
    let loadWarned = false;
    const load = (): void => {
      if (stopped || table.loaded || track === undefined) return;
      track.loadIdentities.promise(o.max_names).then(
        (ids) => {
          if (stopped || table.loaded) return;
          table.load(ids ?? []);
          api.log.info('client names loaded', { devices: table.size, names: table.names });
        },
        (err: unknown) => {
          if (stopped) return;
          // The database may come up later; names learned meanwhile are answered all the same.
          if (!loadWarned) api.log.warn('cannot load stored client names; retrying', { error: err instanceof Error ? err.message : String(err) });
          loadWarned = true;
          api.timers.setTimeout(load, retryMs);
          retryMs = Math.min(LOAD_RETRY_MAX_MS, retryMs * 2);
        },
      );
    };

    api.hooks.startup.tap('clientnames', () => {
      // A reload that changed our options built a new table: take over what the serving one knows, at the swap,
      // so nothing learned between the build and the swap is lost.
      const prev = serving.get(key);
      if (prev !== undefined && prev !== table) table.adopt(prev);
      serving.set(key, table);
      // After the listeners are up: the first answers never wait for the database.
      load();
    });
    api.hooks.shutdown.tap('clientnames', () => {
      stopped = true;
      metrics.detach();
    });
  },
});
