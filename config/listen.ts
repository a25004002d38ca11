import * as net from 'node:net';
import type { ListenSpec } from '../core/listeners';

/** Parses `udp://HOST:PORT` / `tcp://[v6]:PORT`; returns an error text when it is not one. */
export function parseListen(text: string): ListenSpec | string {
  const m = /^(udp|tcp):\/\/(\[([^\]]+)\]|([^:/\]]+)):(\d{1,5})$/.exec(text.trim());
  if (!m) return `${text}: expected udp://HOST:PORT or tcp://HOST:PORT (IPv6 in brackets: udp://[::1]:53)`;
  const host = m[3] ?? m[4];
  const port = Number(m[5]);
  if (!net.isIP(host.split('%')[0])) return `${text}: ${host} is not an IP address`;
  if (m[3] === undefined && net.isIPv6(host)) return `${text}: an IPv6 address must be in brackets`;
  if (port > 65535) return `${text}: port ${port} out of range`;
  return { transport: m[1] as 'udp' | 'tcp', host, port, text };
}
