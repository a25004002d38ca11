/**
 * A timing slot bound to one tap at registration. Observing costs two clock reads per tap per query only
 * when an observer is bound (the metrics plugin binds a histogram child here, once — never a label lookup per query).
 */
export interface TapTiming {
  readonly plugin: string;
  readonly hook: string;
  observe: ((seconds: number) => void) | null;
}
