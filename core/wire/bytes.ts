/**
 * Integer reads and writes on a message's bytes without Buffer's argument checks. In Node 20 `readUInt16BE` and
 * `writeUInt16BE` validate their offset (and value) on every call and cost about 10× a plain byte access; a query
 * makes a few dozen of them. Only for offsets the caller has already checked against the length: out of range,
 * a read gives garbage (not a RangeError) and a write is dropped.
 */

export function u16(b: Uint8Array, off: number): number {
  return (b[off] << 8) | b[off + 1];
}

export function u32(b: Uint8Array, off: number): number {
  return ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
}

/** Little-endian, for our own stored formats (the cache's slab chunks), not for DNS messages. */
export function u32le(b: Uint8Array, off: number): number {
  return (b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | (b[off + 3] << 24)) >>> 0;
}

export function put16(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 8;
  b[off + 1] = v;
}

export function put32(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 24;
  b[off + 1] = v >>> 16;
  b[off + 2] = v >>> 8;
  b[off + 3] = v;
}
