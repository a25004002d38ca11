/**
 * List sources: local files, `http(s)://` URLs and names written in Corefile.yaml itself. A URL is fetched with a
 * conditional request (ETag / Last-Modified), a size and a time limit, into a temporary file beside its last good
 * copy; only a download that parses sensibly replaces that copy and the tables built from it, so a 404, a
 * timeout, a truncated or garbage download keeps what was blocking before. The copy on disk is what a restart
 * without internet loads.
 *
 * URLs are fetched with node:http / node:https rather than the global fetch: a per-source CA (`ca_file`) cannot be
 * given to Node's fetch without the undici package, and trusting a CA must never be process-wide.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { LineKind, nameKeyOfBytes, newParsedLine, parseLine } from './listParser';
import { MAX_KEY, NameTable, TableBuilder } from './nameTable';
import { Pattern, PatternError } from './patternMatcher';

export type SourceKind = 'block' | 'allow';
export type SourceLocation = { readonly type: 'url'; readonly url: string } | { readonly type: 'file'; readonly path: string } | { readonly type: 'inline'; readonly lines: readonly string[] };

export interface FetchLimits {
  readonly timeoutMs: number;
  readonly maxBytes: number;
  readonly ca: Buffer | undefined;
  readonly maxPatterns: number;
}

/** Bad lines quoted per source (`SOURCE:LINE`), the rest only counted. */
export const BAD_SAMPLES = 5;
const MAX_REDIRECTS = 3;

/** What one parse of a source produced. */
export interface BuiltTables {
  readonly block: NameTable;
  readonly allow: NameTable;
  readonly blockPatterns: readonly Pattern[];
  readonly allowPatterns: readonly Pattern[];
  readonly lines: number;
  readonly names: number;
  readonly badLines: number;
  readonly unsupported: number;
  readonly badSamples: readonly string[];
  readonly patternsDropped: number;
}

export interface SourceStatus {
  readonly source: string;
  readonly kind: SourceKind;
  readonly names: number;
  readonly badLines: number;
  readonly unsupported: number;
  /** Wall-clock epoch ms of the last successful refresh (or of the disk copy loaded at start). */
  readonly lastRefresh: number | null;
  readonly ok: boolean;
  readonly error: string | null;
}

const EMPTY: BuiltTables = { block: NameTable.EMPTY, allow: NameTable.EMPTY, blockPatterns: [], allowPatterns: [], lines: 0, names: 0, badLines: 0, unsupported: 0, badSamples: [], patternsDropped: 0 };

/** Thrown for a download or file that cannot be used; the previous tables stay. */
export class SourceError extends Error {}

export class Source {
  tables: BuiltTables = EMPTY;
  lastRefresh: number | null = null;
  ok = true;
  error: string | null = null;
  etag: string | undefined;
  lastModified: string | undefined;
  refreshes = 0;
  failures = 0;
  /** The disk copy (URL) or the file itself; null for inline names. */
  readonly copyPath: string | null;

  constructor(readonly id: string, readonly kind: SourceKind, readonly location: SourceLocation, cacheDir: string) {
    if (location.type === 'url') this.copyPath = path.join(cacheDir, `${crypto.createHash('sha256').update(location.url).digest('hex').slice(0, 24)}.list`);
    else if (location.type === 'file') this.copyPath = location.path;
    else this.copyPath = null;
  }

  status(): SourceStatus {
    const t = this.tables;
    return { source: this.id, kind: this.kind, names: t.block.count + t.allow.count, badLines: t.badLines, unsupported: t.unsupported, lastRefresh: this.lastRefresh, ok: this.ok, error: this.error };
  }

  get byteLength(): number {
    return this.tables.block.byteLength + this.tables.allow.byteLength;
  }

  /** Builds the tables from what is on disk (or inline); false when there is nothing yet (a URL never fetched). */
  async loadLocal(limits: FetchLimits): Promise<boolean> {
    if (this.location.type === 'inline') {
      this.tables = await buildFromLines(this.location.lines, this.id, this.kind, limits.maxPatterns);
      this.lastRefresh = Date.now();
      return true;
    }
    const file = this.copyPath as string;
    let st: fs.Stats;
    try {
      st = await fs.promises.stat(file);
    } catch (err) {
      if (this.location.type === 'file') this.fail(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      return false;
    }
    try {
      this.tables = await buildFromFile(file, this.id, this.kind, limits.maxPatterns);
    } catch (err) {
      this.fail((err as Error).message);
      return false;
    }
    if (this.location.type === 'url') {
      try {
        const meta = JSON.parse(await fs.promises.readFile(file + '.json', 'utf8')) as { etag?: string; lastModified?: string; fetchedAt?: number };
        this.etag = meta.etag;
        this.lastModified = meta.lastModified;
        this.lastRefresh = meta.fetchedAt ?? st.mtimeMs;
      } catch {
        this.lastRefresh = st.mtimeMs;
      }
    } else this.lastRefresh = st.mtimeMs;
    this.ok = true;
    this.error = null;
    return true;
  }

  /** A file source: its modification stamp, to rebuild only when it changed. */
  async fileStamp(): Promise<string> {
    const st = await fs.promises.stat(this.copyPath as string);
    return `${st.mtimeMs}:${st.size}`;
  }

  /**
   * Fetches a URL source (conditionally) and swaps in the new tables when the download is usable. Resolves with
   * 'updated', 'unchanged'; rejects with the reason otherwise (the previous tables stay).
   */
  async refresh(limits: FetchLimits): Promise<'updated' | 'unchanged'> {
    if (this.location.type !== 'url') {
      const ok = await this.loadLocal(limits);
      if (!ok) throw new SourceError(this.error ?? 'cannot read');
      this.refreshes++;
      return 'updated';
    }
    const file = this.copyPath as string;
    await fs.promises.mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      const got = await downloadOffThread(this.location.url, tmp, limits, this.tables === EMPTY ? {} : { etag: this.etag, lastModified: this.lastModified });
      if (got.status === 304) {
        this.lastRefresh = Date.now();
        this.ok = true;
        this.error = null;
        this.refreshes++;
        await writeMeta(file, this.etag, this.lastModified, this.lastRefresh);
        return 'unchanged';
      }
      const built = await buildFromFile(tmp, this.id, this.kind, limits.maxPatterns);
      await fs.promises.rename(tmp, file);
      this.tables = built;
      this.etag = got.etag;
      this.lastModified = got.lastModified;
      this.lastRefresh = Date.now();
      this.ok = true;
      this.error = null;
      this.refreshes++;
      await writeMeta(file, this.etag, this.lastModified, this.lastRefresh);
      return 'updated';
    } catch (err) {
      this.fail((err as Error).message);
      throw err;
    } finally {
      await fs.promises.rm(tmp, { force: true });
    }
  }

  private fail(message: string): void {
    this.ok = false;
    this.error = message;
    this.failures++;
  }
}

async function writeMeta(file: string, etag: string | undefined, lastModified: string | undefined, fetchedAt: number): Promise<void> {
  await fs.promises.writeFile(file + '.json', JSON.stringify({ etag, lastModified, fetchedAt }));
}

export interface Downloaded {
  status: number;
  etag?: string;
  lastModified?: string;
}

/** GETs `url` into `dest`, at most `maxBytes`, everything (redirects included) within `timeoutMs`. */
export function download(url: string, dest: string, limits: FetchLimits, cond: { etag?: string; lastModified?: string }): Promise<Downloaded> {
  return new Promise<Downloaded>((resolve, reject) => {
    let settled = false;
    let req: http.ClientRequest | undefined;
    let out: fs.WriteStream | undefined;
    const finish = (err: Error | null, value?: Downloaded): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err !== null) {
        req?.destroy();
        out?.destroy();
        reject(err);
      } else resolve(value as Downloaded);
    };
    const timer = setTimeout(() => finish(new SourceError(`timed out after ${limits.timeoutMs} ms`)), limits.timeoutMs);
    const get = (target: string, hops: number): void => {
      let u: URL;
      try {
        u = new URL(target);
      } catch {
        finish(new SourceError(`bad URL ${target}`));
        return;
      }
      const headers: Record<string, string> = { 'user-agent': 'codexdns-filter', accept: 'text/plain, */*' };
      if (cond.etag) headers['if-none-match'] = cond.etag;
      if (cond.lastModified) headers['if-modified-since'] = cond.lastModified;
      const opts: https.RequestOptions = { method: 'GET', headers, agent: false };
      if (u.protocol === 'https:' && limits.ca !== undefined) opts.ca = limits.ca;
      const mod = u.protocol === 'https:' ? https : u.protocol === 'http:' ? http : undefined;
      if (mod === undefined) {
        finish(new SourceError(`unsupported protocol ${u.protocol}`));
        return;
      }
      req = mod.request(u, opts, (res) => {
        const status = res.statusCode ?? 0;
        if (status >= 300 && status < 400 && status !== 304 && res.headers.location) {
          res.resume();
          if (hops >= MAX_REDIRECTS) finish(new SourceError(`more than ${MAX_REDIRECTS} redirects`));
          else get(new URL(res.headers.location, u).toString(), hops + 1);
          return;
        }
        if (status === 304) {
          res.resume();
          finish(null, { status });
          return;
        }
        if (status !== 200) {
          res.resume();
          finish(new SourceError(`HTTP ${status}`));
          return;
        }
        const declared = Number(res.headers['content-length']);
        if (Number.isFinite(declared) && declared > limits.maxBytes) {
          finish(new SourceError(`larger than max_size (${declared} > ${limits.maxBytes} bytes)`));
          return;
        }
        out = fs.createWriteStream(dest);
        let bytes = 0;
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          if (bytes > limits.maxBytes) {
            finish(new SourceError(`larger than max_size (stopped reading at ${limits.maxBytes} bytes)`));
            return;
          }
          if (out !== undefined && !out.write(chunk)) {
            res.pause();
            out.once('drain', () => res.resume());
          }
        });
        res.on('error', (err) => finish(new SourceError(err.message)));
        res.on('end', () => {
          if (settled) return;
          out?.end(() => finish(null, { status, etag: header(res.headers.etag), lastModified: header(res.headers['last-modified']) }));
        });
        out.on('error', (err) => finish(new SourceError(`cannot write the copy: ${err.message}`)));
      });
      req.on('error', (err) => finish(new SourceError(err.message)));
      req.end();
    };
    get(url, 0);
  });
}

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Parses lines into tables; shared by files, downloads and inline names. */
class ListReader {
  private readonly block = new TableBuilder();
  private readonly allow = new TableBuilder();
  private readonly blockPatterns: Pattern[] = [];
  private readonly allowPatterns: Pattern[] = [];
  private readonly parsed = newParsedLine();
  private readonly key = new Uint8Array(MAX_KEY);
  lines = 0;
  names = 0;
  bad = 0;
  unsupported = 0;
  patternsDropped = 0;
  readonly badSamples: string[] = [];

  constructor(private readonly id: string, private readonly kind: SourceKind, private readonly maxPatterns: number) {}

  /** Returns true when a builder wants a flush (the caller awaits `flush()` to yield). */
  line(text: string): boolean {
    this.lines++;
    const p = this.parsed;
    const kind = parseLine(text, p);
    if (kind === LineKind.Skip) return false;
    const allow = this.kind === 'allow' || p.exception;
    if (kind === LineKind.Names) {
      const b = allow ? this.allow : this.block;
      for (const k of p.names) b.add(k);
      this.names += p.names.length;
      return b.full;
    }
    if (kind === LineKind.Pattern) {
      const list = allow ? this.allowPatterns : this.blockPatterns;
      if (this.blockPatterns.length + this.allowPatterns.length >= this.maxPatterns) {
        this.patternsDropped++;
        this.unsupported++;
        return false;
      }
      try {
        list.push(new Pattern(p.pattern));
        this.names++;
      } catch (err) {
        if (err instanceof PatternError) this.unsupported++;
        else throw err;
      }
      return false;
    }
    if (kind === LineKind.Unsupported) this.unsupported++;
    else {
      this.bad++;
      if (this.badSamples.length < BAD_SAMPLES) this.badSamples.push(`${this.id}:${this.lines}: ${text.length > 80 ? text.slice(0, 80) + '…' : text}`);
    }
    return false;
  }

  /** `line` for b[start, end) of a file: the common lines without making a string (see nameKeyOfBytes). */
  lineBytes(b: Buffer, start: number, end: number): boolean {
    const len = nameKeyOfBytes(b, start, end, this.key);
    if (len < 0) return this.line(b.toString('latin1', start, end));
    this.lines++;
    this.names++;
    const t = this.kind === 'allow' ? this.allow : this.block;
    t.addBytes(this.key, len);
    return t.full;
  }

  async flush(): Promise<void> {
    if (this.block.full) await this.block.flush();
    if (this.allow.full) await this.allow.flush();
  }

  async finish(): Promise<BuiltTables> {
    // A captive portal's HTML page or a binary file is not a list: refuse it rather than empty the table.
    if (this.bad > Math.max(10, this.names + this.unsupported)) throw new SourceError(`not a list: ${this.bad} of ${this.lines} lines unreadable (${this.badSamples[0] ?? ''})`);
    const block = await this.block.finish();
    const allow = await this.allow.finish();
    return { block, allow, blockPatterns: this.blockPatterns, allowPatterns: this.allowPatterns, lines: this.lines, names: this.names, badLines: this.bad, unsupported: this.unsupported, badSamples: this.badSamples, patternsDropped: this.patternsDropped };
  }
}

async function buildFromLines(lines: readonly string[], id: string, kind: SourceKind, maxPatterns: number): Promise<BuiltTables> {
  const r = new ListReader(id, kind, maxPatterns);
  for (const l of lines) if (r.line(l)) await r.flush();
  return r.finish();
}

export interface BuildRequest {
  readonly file: string;
  readonly id: string;
  readonly kind: SourceKind;
  readonly maxPatterns: number;
}

interface WorkerResult {
  block: { keys: Uint8Array; offsets: Uint32Array; count: number };
  allow: { keys: Uint8Array; offsets: Uint32Array; count: number };
  blockPatterns: string[];
  allowPatterns: string[];
  lines: number;
  names: number;
  badLines: number;
  unsupported: number;
  badSamples: string[];
  patternsDropped: number;
}

const WORKER_SCRIPT = path.join(__dirname, 'buildWorker.js');

/** What buildWorker.ts is asked to do. */
export type WorkerRequest =
  | ({ readonly task: 'build' } & BuildRequest)
  | { readonly task: 'download'; readonly url: string; readonly dest: string; readonly limits: FetchLimits; readonly cond: { etag?: string; lastModified?: string } };

/**
 * Runs one task in a worker thread that ends with it. A thread's garbage goes with it: the download's socket
 * buffers and the build's scratch are freed when the thread ends, where in this thread they would wait for a
 * garbage collection that nothing here triggers (dead Buffers do not fill the JS heap) and pile up list after list.
 */
function inWorker<T>(req: WorkerRequest, what: string): Promise<T & { error?: string }> {
  return new Promise((resolve, reject) => {
    // A small young generation: the worker's garbage is collected often instead of growing the process's RSS.
    const worker = new Worker(WORKER_SCRIPT, { workerData: req, resourceLimits: { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 32 } });
    // A task in progress must not hold the process open at shutdown.
    worker.unref();
    let settled = false;
    worker.once('message', (m: T & { error?: string }) => {
      settled = true;
      if (m.error !== undefined) reject(new SourceError(m.error));
      else resolve(m);
    });
    worker.once('error', (err) => {
      if (!settled) reject(new SourceError(`${what} failed: ${err.message}`));
      settled = true;
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new SourceError(`${what} exited with code ${code}`));
      settled = true;
    });
  });
}

/** `download` in a worker thread (see inWorker); here when the worker script is missing. */
export function downloadOffThread(url: string, dest: string, limits: FetchLimits, cond: { etag?: string; lastModified?: string }): Promise<Downloaded> {
  if (!fs.existsSync(WORKER_SCRIPT)) return download(url, dest, limits, cond);
  return inWorker<Downloaded>({ task: 'download', url, dest, limits, cond }, 'list download');
}

/** Builds in a worker thread (see buildWorker.ts); falls back to the chunked build here when none can start. */
export async function buildFromFile(file: string, id: string, kind: SourceKind, maxPatterns: number): Promise<BuiltTables> {
  if (!fs.existsSync(WORKER_SCRIPT)) return buildFromFileInline(file, id, kind, maxPatterns);
  const m = await inWorker<WorkerResult>({ task: 'build', file, id, kind, maxPatterns }, 'list builder');
  const table = (t: WorkerResult['block']): NameTable => (t.count === 0 ? NameTable.EMPTY : new NameTable(t));
  // Patterns were checked in the worker; compiling them again here is bounded by max_patterns.
  return {
    block: table(m.block),
    allow: table(m.allow),
    blockPatterns: m.blockPatterns.map((p) => new Pattern(p)),
    allowPatterns: m.allowPatterns.map((p) => new Pattern(p)),
    lines: m.lines,
    names: m.names,
    badLines: m.badLines,
    unsupported: m.unsupported,
    badSamples: m.badSamples,
    patternsDropped: m.patternsDropped,
  };
}

/** Streams a file line by line (64 KiB at a time): never the whole text in memory, no string per line. */
export async function buildFromFileInline(file: string, id: string, kind: SourceKind, maxPatterns: number): Promise<BuiltTables> {
  const r = new ListReader(id, kind, maxPatterns);
  await forEachLineBytes(file, (b, start, end) => r.lineBytes(b, start, end), () => r.flush());
  return r.finish();
}

/**
 * Calls `onLine` for each line of `file`; when it returns true, awaits `onFull` before reading on. Rejects on a
 * NUL byte: a binary file is not a list.
 */
export async function forEachLine(file: string, onLine: (line: string, n: number) => boolean | void, onFull?: () => Promise<void>): Promise<void> {
  await forEachLineBytes(file, (b, start, end, n) => onLine(b.toString('latin1', start, end), n), onFull);
}

/** LONGEST_LINE bytes without a newline: not a list line; its first 200 bytes are passed on (to be counted bad). */
const LONGEST_LINE = 64 * 1024;

/** forEachLine over bytes: `onLine` gets the line as b[start, end) (no newline), valid only during the call. */
export async function forEachLineBytes(file: string, onLine: (b: Buffer, start: number, end: number, n: number) => boolean | void, onFull?: () => Promise<void>): Promise<void> {
  const stream = fs.createReadStream(file, { highWaterMark: 64 * 1024 });
  // The unfinished last line of the previous read; only it is copied, never the whole read.
  let rest: Buffer | null = null;
  let n = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    if (chunk.includes(0)) {
      stream.destroy();
      throw new SourceError('not a list: binary content');
    }
    let start = 0;
    if (rest !== null) {
      const nl = chunk.indexOf(10);
      if (nl === -1) {
        rest = Buffer.concat([rest, chunk]);
        start = chunk.length;
      } else {
        const line = Buffer.concat([rest, chunk.subarray(0, nl)]);
        rest = null;
        if (onLine(line, 0, line.length, ++n) === true && onFull) await onFull();
        start = nl + 1;
      }
    }
    for (;;) {
      const end = chunk.indexOf(10, start);
      if (end === -1) break;
      if (onLine(chunk, start, end, ++n) === true && onFull) await onFull();
      start = end + 1;
    }
    // (A read without a newline already went into `rest` above and left start at its end.)
    if (start < chunk.length) rest = Buffer.from(chunk.subarray(start));
    if (rest !== null && rest.length > LONGEST_LINE) {
      // A line longer than any list line: count it as bad without holding it.
      onLine(rest, 0, 200, ++n);
      rest = null;
    }
  }
  if (rest !== null && rest.length > 0) {
    if (onLine(rest, 0, rest.length, ++n) === true && onFull) await onFull();
  }
}
