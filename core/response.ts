import * as dnsPacket from 'dns-packet';
import { Flag, HEADER_LEN } from './wire/constants';
import { MessageLayout, layoutOf } from './wire/message';

/** An RFC 8914 Extended DNS Error to attach to the client's OPT record. */
export interface ExtendedError {
  readonly code: number;
  readonly text?: string;
}

/**
 * A response travelling up the chain. It holds wire bytes, a decoded packet, or both, and converts lazily:
 * a forwarded or cached answer is never decoded unless a plugin asks for `packet`.
 */
export class DnsResponse {
  /** The plugin whose `query` tap produced this response (set by the dispatcher). */
  plugin = '';
  /** Extended DNS Error for the client (serve-stale, blocked, …). */
  ede: ExtendedError | undefined;
  /** Set AA in the reply; only a plugin that is the authority for the name (hosts, a zone file) does. */
  authoritative = false;
  /**
   * A failure this server made because nothing answered in time (no upstream verdict): a cache keeps it at
   * most briefly, since it says more about that moment than about the name.
   */
  localFailure = false;
  /** The server that gave this answer (`IP:port`), set by a plugin that asks others (forward): for logs. */
  upstream: string | undefined = undefined;
  /** Send nothing at all (a rate limiter's `drop` action). */
  dropped = false;
  private wireBytes: Buffer | undefined;
  private decoded: dnsPacket.Packet | undefined;
  private cachedLayout: MessageLayout | null | undefined;
  /** `wire` and the room after it, one allocation this response alone holds (see `fromRender`). */
  private ownBuffer: Buffer | undefined;

  private constructor(wire: Buffer | undefined, packet: dnsPacket.Packet | undefined, layout?: MessageLayout) {
    this.wireBytes = wire;
    this.decoded = packet;
    this.cachedLayout = layout;
  }

  /** Wraps encoded bytes. `layout` may be passed when it is already known (a cache hit). */
  static fromWire(wire: Buffer, layout?: MessageLayout): DnsResponse {
    return new DnsResponse(wire, undefined, layout);
  }

  /**
   * Wraps the first `length` bytes of `buffer`, fresh bytes made for this one response (a cache hit's copy of
   * its entry); the rest of `buffer` is room the writer may use to build the client's reply in place, so the
   * answer is copied once on its way out instead of twice. Nothing else may hold `buffer`.
   */
  static fromRender(buffer: Buffer, length: number, layout?: MessageLayout): DnsResponse {
    const r = new DnsResponse(length === buffer.length ? buffer : buffer.subarray(0, length), undefined, layout);
    r.ownBuffer = buffer;
    return r;
  }

  /** Wraps a dns-packet message built by a plugin; it is encoded once, when written. */
  static fromPacket(packet: dnsPacket.Packet): DnsResponse {
    return new DnsResponse(undefined, packet);
  }

  /** A response that makes the server send nothing. */
  static drop(): DnsResponse {
    const r = new DnsResponse(Buffer.alloc(HEADER_LEN), undefined);
    r.dropped = true;
    return r;
  }

  get wire(): Buffer {
    if (this.wireBytes === undefined) {
      this.wireBytes = dnsPacket.encode(this.decoded as dnsPacket.Packet);
    }
    return this.wireBytes;
  }

  get packet(): dnsPacket.Packet {
    if (this.decoded === undefined) this.decoded = dnsPacket.decode(this.wireBytes as Buffer);
    return this.decoded;
  }

  /** Replaces the message; later reads of `wire`/`packet` reflect it. */
  setPacket(packet: dnsPacket.Packet): void {
    this.decoded = packet;
    this.wireBytes = undefined;
    this.cachedLayout = undefined;
    this.ownBuffer = undefined;
  }

  /**
   * For the writer: the bytes of `wire` extended to `size`, to write the client's reply over, or null when
   * this response holds no room (or not enough). Once the writer used them it calls `wroteReply`.
   */
  replyBuffer(size: number): Buffer | null {
    const own = this.ownBuffer;
    if (own === undefined || size > own.length) return null;
    return size === own.length ? own : own.subarray(0, size);
  }

  /** The reply was written over this response's bytes: from now on it holds exactly what was sent. */
  wroteReply(reply: Buffer): void {
    this.wireBytes = reply;
    this.decoded = undefined;
    this.cachedLayout = undefined;
    this.ownBuffer = undefined;
  }

  /** Record offsets of the encoded form; null when the bytes are malformed. */
  get layout(): MessageLayout | null {
    if (this.cachedLayout === undefined) this.cachedLayout = layoutOf(this.wire);
    return this.cachedLayout;
  }

  get flags(): number {
    return this.wire.readUInt16BE(2);
  }

  /** The full RCODE, including the extended bits carried by an OPT record. */
  get rcode(): number {
    const low = this.wire[3] & 0x0f;
    const layout = this.layout;
    if (layout !== null && layout.optStart !== -1) return ((layout.optTtl >>> 24) << 4) | low;
    return low;
  }

  get truncated(): boolean {
    return (this.flags & Flag.TC) !== 0;
  }
}
