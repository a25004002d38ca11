import * as fs from 'node:fs';
import type { QueryRecord } from './format';

/** Where formatted batches go. */
export interface LineSink {
  /** Writes a batch; resolves when it is written. Rejects when it could not be (the batch counts as dropped). */
  write(records: readonly QueryRecord[]): Promise<void> | void;
  close(): Promise<void> | void;
}

export interface BufferStats {
  /** Lines written. */
  written: number;
  /** Lines dropped because the buffer was full. */
  droppedFull: number;
  /** Lines dropped because the write failed (disk full, file removed…). */
  droppedWrite: number;
  /** Batches written. */
  batches: number;
}

export interface QueryBufferOptions {
  /** Records held at most while waiting to be written; beyond it records are dropped and counted. */
  readonly capacity: number;
  /** A flush starts as soon as this many records wait (otherwise on the flush timer). */
  readonly batch: number;
  readonly sink: LineSink;
  /** Called for each batch that could not be written, with the error. */
  readonly onWriteError?: (err: unknown, lines: number) => void;
}

/**
 * The fields of the buffered queries, one array per field (struct of arrays). The `served` tap writes numbers
 * and references to strings that already exist (the client's address, the question's wire key) into slot `i`:
 * no object is allocated per query, so nothing per query survives into V8's old generation while it waits for
 * the flush. Arrays keep their backing store across flushes and grow only to the largest backlog seen.
 */
export class Columns {
  n = 0;
  readonly time: number[] = [];
  readonly remote: string[] = [];
  readonly port: number[] = [];
  readonly id: number[] = [];
  readonly qtype: number[] = [];
  readonly qclass: number[] = [];
  readonly wireKey: string[] = [];
  readonly tcp: number[] = [];
  readonly size: number[] = [];
  readonly dnssecOk: number[] = [];
  readonly ednsSize: number[] = [];
  readonly rcode: number[] = [];
  readonly flags: number[] = [];
  readonly rsize: number[] = [];
  readonly duration: number[] = [];
  readonly server: string[] = [];
  readonly plugin: string[] = [];

  record(i: number): QueryRecord {
    return {
      time: this.time[i],
      remote: this.remote[i],
      port: this.port[i],
      id: this.id[i],
      qtype: this.qtype[i],
      qclass: this.qclass[i],
      wireKey: this.wireKey[i],
      proto: this.tcp[i] === 1 ? 'tcp' : 'udp',
      size: this.size[i],
      dnssecOk: this.dnssecOk[i] === 1,
      ednsSize: this.ednsSize[i],
      rcode: this.rcode[i],
      flags: this.flags[i],
      rsize: this.rsize[i],
      duration: this.duration[i],
      server: this.server[i],
      plugin: this.plugin[i],
    };
  }

  /** Copies a record in (tests, and callers that already have one). */
  put(i: number, r: QueryRecord): void {
    this.time[i] = r.time;
    this.remote[i] = r.remote;
    this.port[i] = r.port;
    this.id[i] = r.id;
    this.qtype[i] = r.qtype;
    this.qclass[i] = r.qclass;
    this.wireKey[i] = r.wireKey;
    this.tcp[i] = r.proto === 'tcp' ? 1 : 0;
    this.size[i] = r.size;
    this.dnssecOk[i] = r.dnssecOk ? 1 : 0;
    this.ednsSize[i] = r.ednsSize;
    this.rcode[i] = r.rcode;
    this.flags[i] = r.flags;
    this.rsize[i] = r.rsize;
    this.duration[i] = r.duration;
    this.server[i] = r.server;
    this.plugin[i] = r.plugin;
  }
}

/**
 * A bounded buffer of query records between the `served` hook (reserve a slot and fill it: O(1), no I/O, no
 * formatting, no allocation) and a sink that writes them in batches, one batch at a time. Two column sets
 * alternate: while one is being formatted and written, new queries fill the other. When `capacity` records
 * wait, further ones are dropped and counted, never waited for.
 */
export class QueryBuffer {
  readonly stats: BufferStats = { written: 0, droppedFull: 0, droppedWrite: 0, batches: 0 };
  /** The set the `served` tap fills. */
  cols = new Columns();
  private spare = new Columns();
  /** Records of the set being written that are not written yet. */
  private draining = 0;
  private writing: Promise<void> | null = null;
  private scheduled = false;
  private closed = false;

  constructor(private readonly opts: QueryBufferOptions) {}

  /** Records waiting to be written (the depth gauge). */
  get depth(): number {
    return this.cols.n + this.draining;
  }

  /** A slot of `cols` to fill, or -1 when the buffer is full (counted as dropped) or closed. */
  reserve(): number {
    if (this.closed) return -1;
    const cols = this.cols;
    if (cols.n + this.draining >= this.opts.capacity) {
      this.stats.droppedFull++;
      return -1;
    }
    const i = cols.n++;
    if (cols.n >= this.opts.batch && !this.scheduled && this.writing === null) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        void this.flush();
      });
    }
    return i;
  }

  /** Buffers a whole record (tests). */
  push(r: QueryRecord): void {
    const i = this.reserve();
    if (i !== -1) this.cols.put(i, r);
  }

  /** Writes what is pending, in batches of at most `batch`; resolves when the buffer is empty. */
  flush(): Promise<void> {
    if (this.writing !== null) return this.writing;
    if (this.cols.n === 0) return Promise.resolve();
    this.writing = this.drain().finally(() => {
      this.writing = null;
    });
    return this.writing;
  }

  private async drain(): Promise<void> {
    while (this.cols.n > 0) {
      const full = this.cols;
      this.cols = this.spare;
      this.cols.n = 0;
      this.spare = full;
      const total = full.n;
      this.draining = total;
      for (let start = 0; start < total; start += this.opts.batch) {
        const end = Math.min(total, start + this.opts.batch);
        const batch: QueryRecord[] = new Array<QueryRecord>(end - start);
        for (let i = start; i < end; i++) batch[i - start] = full.record(i);
        try {
          await this.opts.sink.write(batch);
          this.stats.written += batch.length;
          this.stats.batches++;
        } catch (err) {
          this.stats.droppedWrite += batch.length;
          this.opts.onWriteError?.(err, batch.length);
        }
        this.draining = total - end;
        // Let the answer path run between two batches of a backlog.
        if (end < total) await new Promise<void>((r) => setImmediate(r));
      }
      this.draining = 0;
      full.n = 0;
    }
  }

  /** Writes everything pending, then closes the sink; later queries are ignored. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
    await this.flush();
    await this.opts.sink.close();
  }
}

/**
 * Appends batches to a file: one `write(2)` per batch through libuv's thread pool (never on the event loop),
 * the file opened in append mode so `logrotate`'s `copytruncate` works and a reload (SIGHUP), which builds a
 * new plugin instance, reopens it after a rename-style rotation. The file is opened at the first write, so a
 * chain that is built but never used (a reload that fails further down) holds no descriptor.
 */
export class FileSink implements LineSink {
  private fd: number | null = null;
  private opening: Promise<number> | null = null;
  private closed = false;

  constructor(readonly file: string, private readonly format: (records: readonly QueryRecord[]) => string) {}

  /** Checks now (at setup) that the file can be opened for appending, creating it if needed. */
  static check(file: string): void {
    fs.closeSync(fs.openSync(file, 'a', 0o640));
  }

  async write(records: readonly QueryRecord[]): Promise<void> {
    if (this.closed) throw new Error('query log file is closed');
    const fd = this.fd ?? (await this.open());
    await writeAll(fd, Buffer.from(this.format(records), 'utf8'));
  }

  private open(): Promise<number> {
    this.opening ??= new Promise<number>((resolve, reject) => {
      fs.open(this.file, 'a', 0o640, (err, fd) => {
        this.opening = null;
        if (err) return reject(err);
        this.fd = fd;
        resolve(fd);
      });
    });
    return this.opening;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.opening) await this.opening.catch(() => undefined);
    const fd = this.fd;
    this.fd = null;
    if (fd !== null) await new Promise<void>((resolve) => fs.close(fd, () => resolve()));
  }
}

function writeAll(fd: number, buf: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (offset: number): void => {
      fs.write(fd, buf, offset, buf.length - offset, null, (err, n) => {
        if (err) return reject(err);
        if (offset + n < buf.length) return step(offset + n);
        resolve();
      });
    };
    step(0);
  });
}
