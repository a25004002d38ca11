/** An error an HTTP handler throws to answer with a status other than 500 (the metrics listener sends its text). */
export class HttpStatusError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = 'HttpStatusError';
  }
}

/** True for any error that carries an HTTP status (ours or a plugin's own class of the same shape). */
export function httpStatusOf(err: unknown): number | undefined {
  const s = (err as { status?: unknown } | null)?.status;
  return typeof s === 'number' && Number.isInteger(s) && s >= 400 && s <= 599 ? s : undefined;
}
