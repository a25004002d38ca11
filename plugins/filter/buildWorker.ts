/**
 * Downloads a list, or builds one source's tables, in a worker thread (see inWorker in sources.ts): parsing a
 * million-line list costs seconds of CPU that must never be spent on the thread answering queries, and both tasks
 * leave garbage that is freed at once when the thread ends. The finished tables are transferred (moved, not
 * copied) back.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { buildFromFileInline, download, type WorkerRequest } from './sources';

const fail = (err: unknown): { error: string } => ({ error: err instanceof Error ? err.message : String(err) });

if (parentPort !== null && workerData !== null && typeof workerData === 'object') {
  const port = parentPort;
  const req = workerData as WorkerRequest;
  if (req.task === 'download') {
    // A Buffer arrives as a Uint8Array.
    const ca = req.limits.ca === undefined ? undefined : Buffer.from(req.limits.ca.buffer, req.limits.ca.byteOffset, req.limits.ca.byteLength);
    download(req.url, req.dest, { ...req.limits, ca }, req.cond).then(
      (got) => port.postMessage(got),
      (err: unknown) => port.postMessage(fail(err)),
    );
  } else {
    buildFromFileInline(req.file, req.id, req.kind, req.maxPatterns).then(
      (t) => {
        const buffers = new Set<ArrayBuffer>();
        for (const a of [t.block.keys, t.block.offsets, t.allow.keys, t.allow.offsets]) if (a.byteLength > 0) buffers.add(a.buffer as ArrayBuffer);
        port.postMessage(
          {
            block: { keys: t.block.keys, offsets: t.block.offsets, count: t.block.count },
            allow: { keys: t.allow.keys, offsets: t.allow.offsets, count: t.allow.count },
            blockPatterns: t.blockPatterns.map((p) => p.source),
            allowPatterns: t.allowPatterns.map((p) => p.source),
            lines: t.lines,
            names: t.names,
            badLines: t.badLines,
            unsupported: t.unsupported,
            badSamples: t.badSamples,
            patternsDropped: t.patternsDropped,
          },
          [...buffers],
        );
      },
      (err: unknown) => port.postMessage(fail(err)),
    );
  }
}
