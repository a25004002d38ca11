import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CodexServer } from '../server/server';
import type { PluginCatalog } from '../config/load';
import { exchangeRaw, query, type Answer, type QueryOptions } from './client';

export { buildQuery, exchangeRaw, query } from './client';
export type { Answer, QueryOptions } from './client';
export { startFakeUpstream, buildReply, recordA, recordSoa, FORGED_A } from './fakeUpstream';
/** The client matcher acl uses (networks and addresses, IPv4-mapped IPv6 as IPv4): to test a plugin's client rules. */
export { CidrSet, CidrParseError } from '../plugins/pkg/cidr';
export type { FakeUpstream, FakeUpstreamOptions, FakeQuery, QueryFilter, NameRecords, RecordMap, RecordData, RcodeName, AnswerScript, FakeReply, ReplyParts, Forgery } from './fakeUpstream';

export interface TestServer {
  readonly server: CodexServer;
  /** The folder holding Corefile.yaml (relative paths in it resolve here). */
  readonly dir: string;
  readonly configFile: string;
  /** UDP port of the first UDP listener (and TCP port of the first TCP listener). */
  readonly port: number;
  readonly tcpPort: number;
  /** Every log line the server wrote. */
  readonly logs: string[];
  query(name: string, type?: string, opts?: Partial<QueryOptions>): Promise<Answer>;
  exchange(bytes: Buffer, opts?: Partial<QueryOptions>): Promise<Buffer | null>;
  /** Replaces Corefile.yaml and reloads. */
  reload(corefile?: string): Promise<{ ok: boolean; error?: string }>;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Extra files to write next to Corefile.yaml (name → content), e.g. a custom plugin or a hosts file. */
  readonly files?: Record<string, string>;
  readonly catalog?: PluginCatalog;
  /** Watch the file (default false in tests: reload explicitly). */
  readonly watch?: boolean;
  /** Echo log lines to stderr too. */
  readonly verbose?: boolean;
}

/**
 * Starts a real server from a Corefile.yaml string, in a temporary folder, on the addresses the text names
 * (use port 0: `listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]`; both get the same port when they can).
 */
export async function startServer(corefile: string, opts: StartOptions = {}): Promise<TestServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codexdns-test-'));
  const configFile = path.join(dir, 'Corefile.yaml');
  fs.writeFileSync(configFile, corefile);
  for (const [name, content] of Object.entries(opts.files ?? {})) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), content);
  }
  const logs: string[] = [];
  const server = new CodexServer({
    configFile,
    catalog: opts.catalog,
    watch: opts.watch ?? false,
    logSink: (line) => {
      logs.push(line);
      if (opts.verbose) process.stderr.write(line + '\n');
    },
  });
  try {
    await server.start();
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const ports = server.listenerPorts();
  const port = ports.find((p) => p.transport === 'udp')?.port ?? 0;
  const tcpPort = ports.find((p) => p.transport === 'tcp')?.port ?? port;
  const host = ports[0]?.host === '::1' ? '::1' : '127.0.0.1';
  return {
    server,
    dir,
    configFile,
    port,
    tcpPort,
    logs,
    query: (name, type = 'A', q = {}) => query(name, type, { host, ...q, port: q.port ?? (q.tcp ? tcpPort : port) }),
    exchange: (bytes, q = {}) => exchangeRaw(bytes, { host, ...q, port: q.port ?? (q.tcp ? tcpPort : port) }),
    reload: async (text) => {
      if (text !== undefined) fs.writeFileSync(configFile, text);
      return server.reload();
    },
    stop: async () => {
      await server.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
