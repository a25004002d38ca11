/**
 * The rows of the table: the peers codexdns is measured beside (bare Node responder, Node + dns-packet, Node relays,
 * dnsmasq, unbound with 1 thread, codexdns), each on CPU 1 forwarding "." to the upstream, and that upstream
 * (Debian's nsd for bench.test., or bench/upstream.ts when nsd cannot run) on CPU 0.
 */
import fs from 'node:fs';
import path from 'node:path';
import { findBinary } from '../common';
import { freePort, waitReady } from './ports';
import { startProcess, stopProcess, type Managed } from './processes';
import { BENCH_BUILD_DIR, CODEXDNS_CLI, LIFETIME_S, PEERS_DIR, ROOT, toolVersion, type RowId, type SetName } from './settings';


function fill(template: string, vars: Record<string, string | number>): string {
  return template.replace(/\{\{(\w+)\}\}/g, (all, k: string) => (k in vars ? String(vars[k]) : all));
}

function writeFromTemplate(name: string, dir: string, vars: Record<string, string | number>, as = name): string {
  const out = path.join(dir, as);
  fs.writeFileSync(out, fill(fs.readFileSync(path.join(PEERS_DIR, name), 'utf8'), vars));
  return out;
}


export interface PeerDef {
  id: RowId;
  label: string;
  sets: SetName[];
  version: string | null;
  /** Returns the started server, or a reason to skip the row. */
  start(dir: string, port: number, upstreamPort: number): Promise<Managed | string>;
}

const NODE = process.execPath;
const UNBOUND = findBinary('unbound');
const DNSMASQ = findBinary('dnsmasq');
export const NSD = findBinary('nsd');

function nodePeer(id: RowId, label: string, sets: SetName[], script: string, extra: (up: number) => string[]): PeerDef {
  return {
    id,
    label,
    sets,
    version: null,
    start: (dir, port, up) =>
      startProcess(label, 1, NODE, [path.join(BENCH_BUILD_DIR, script), '--port', String(port), ...extra(up),
        '--max-seconds', String(LIFETIME_S)], dir),
  };
}

export function peerDefs(): PeerDef[] {
  return [
    nodePeer('bare', 'bare Node responder', ['hits'], 'bareResponder.js', () => []),
    nodePeer('packet', 'Node + dns-packet', ['hits'], 'packetResponder.js', () => []),
    nodePeer('relay', 'Node bare relay', ['misses'], 'relay.js', (up) => ['--upstream', String(up)]),
    nodePeer('relay-fresh', 'Node relay, socket per query', ['misses'], 'relay.js',
      (up) => ['--upstream', String(up), '--socket-per-query']),
    {
      id: 'dnsmasq',
      label: 'dnsmasq',
      sets: ['hits', 'misses'],
      version: toolVersion(DNSMASQ, ['--version'], /Dnsmasq version (\S+)/),
      start: async (dir, port, up) => {
        if (DNSMASQ === null) return 'dnsmasq not installed (apt-get install -y dnsmasq-base)';
        const conf = writeFromTemplate('dnsmasq.conf', dir, { PORT: port, UPSTREAM_PORT: up, DIR: dir });
        return startProcess('dnsmasq', 1, DNSMASQ, ['-k', '-C', conf], dir);
      },
    },
    {
      id: 'unbound',
      label: 'unbound',
      sets: ['hits', 'misses'],
      version: toolVersion(UNBOUND, ['-V'], /Version (\S+)/),
      start: async (dir, port, up) => {
        if (UNBOUND === null) return 'unbound not installed (apt-get install -y unbound)';
        const conf = writeFromTemplate('unbound.conf', dir, { PORT: port, UPSTREAM_PORT: up, DIR: dir });
        return startProcess('unbound', 1, UNBOUND, ['-d', '-c', conf], dir);
      },
    },
    {
      id: 'codexdns',
      label: 'codexdns',
      sets: ['hits', 'misses'],
      version: (() => {
        try {
          return (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version?: string }).version ?? null;
        } catch {
          return null;
        }
      })(),
      start: async (dir, port, up) => {
        if (!fs.existsSync(CODEXDNS_CLI)) return `${path.relative(ROOT, CODEXDNS_CLI)} does not exist yet (npm run build)`;
        const conf = writeFromTemplate('Corefile.yaml', dir, { PORT: port, UPSTREAM_PORT: up });
        const flags = (process.env.BENCH_CODEXDNS_NODE_FLAGS ?? '').split(/\s+/).filter((s) => s !== '');
        return startProcess('codexdns', 1, NODE, [...flags, CODEXDNS_CLI, '--conf', conf], dir);
      },
    },
  ];
}

// ------------------------------------------------------------------------------------------------ upstream


export interface Upstream {
  kind: string;
  port: number;
  proc: Managed;
}

export async function startUpstream(dir: string): Promise<Upstream> {
  const want = process.env.BENCH_UPSTREAM ?? 'nsd';
  if (want !== 'nsd' && want !== 'node') throw new Error(`BENCH_UPSTREAM=${want}: expected nsd or node`);
  if (want === 'nsd') {
    if (NSD === null) {
      console.log('upstream: nsd not installed (apt-get install -y nsd): using bench/upstream.ts');
    } else {
      const port = await freePort();
      const nsdDir = path.join(dir, 'nsd');
      fs.mkdirSync(nsdDir);
      const conf = writeFromTemplate('nsd.conf', nsdDir, { PORT: port, DIR: nsdDir });
      writeFromTemplate('bench.test.zone', nsdDir, {});
      let proc: Managed | null = null;
      try {
        proc = await startProcess('nsd', 0, NSD, ['-d', '-c', conf], nsdDir);
        await waitReady(port, proc, 10_000);
        const version = toolVersion(NSD, ['-v'], /NSD version (\S+)/);
        return { kind: `nsd ${version}`, port, proc };
      } catch (err) {
        let log = '';
        try {
          log = fs.readFileSync(path.join(nsdDir, 'nsd.log'), 'utf8');
        } catch {
          // no log
        }
        console.log(`upstream: nsd could not be started, using bench/upstream.ts instead: ${(err as Error).message}\n${log}`);
        if (proc !== null) await stopProcess(proc);
      }
    }
  }
  const port = await freePort();
  const proc = await startProcess('node upstream', 0, NODE,
    [path.join(BENCH_BUILD_DIR, 'upstream.js'), '--port', String(port), '--max-seconds', String(LIFETIME_S)], dir);
  await waitReady(port, proc, 10_000);
  return { kind: 'Node fixed responder (bench/upstream.ts)', port, proc };
}
