/** Lookups in flight of one discovery method, so that its close() ends them at once. */

/**
 * The lookups a method has in flight, so that close() can end them at once: each lookup gets its own
 * AbortController, aborted when the caller's signal aborts or when the method closes. Listeners on the
 * caller's signal are removed when the lookup ends (a long-lived signal must not collect them).
 */
export class Inflight {
  private readonly controllers = new Set<AbortController>();
  private closed = false;

  begin(signal: AbortSignal): { signal: AbortSignal; end(): void } {
    const ctl = new AbortController();
    if (this.closed || signal.aborted) {
      ctl.abort();
      return { signal: ctl.signal, end: () => undefined };
    }
    const onAbort = (): void => ctl.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    this.controllers.add(ctl);
    return {
      signal: ctl.signal,
      end: (): void => {
        signal.removeEventListener('abort', onAbort);
        this.controllers.delete(ctl);
      },
    };
  }

  closeAll(): void {
    this.closed = true;
    for (const ctl of this.controllers) ctl.abort();
    this.controllers.clear();
  }
}
