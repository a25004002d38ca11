/**
 * `to: [/etc/resolv.conf]`: the system's resolvers. When the file names only systemd-resolved's stub
 * (127.0.0.53), the real upstreams are in /run/systemd/resolve/resolv.conf, and that file is read instead —
 * forwarding to the stub would work, but would put a second cache and resolved's quirks in the path.
 */
import * as fs from 'node:fs';

export const SYSTEMD_STUB = '127.0.0.53';
export const SYSTEMD_RESOLV_CONF = '/run/systemd/resolve/resolv.conf';

/** The `nameserver` entries of a resolv.conf text, in order (comments `#`/`;` and other lines ignored). */
export function parseResolvConf(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/[#;].*$/, '').trim();
    if (line === '') continue;
    const [key, value] = line.split(/\s+/);
    if (key === 'nameserver' && value !== undefined && value !== '') out.push(value);
  }
  return out;
}

export interface ResolvConfResult {
  /** The nameservers to use. */
  readonly servers: string[];
  /** The file they came from (the systemd one when the stub rule applied). */
  readonly file: string;
  /** Set when the stub rule applied but the systemd file was unusable, so the stub itself is used. */
  readonly warning?: string;
}

/**
 * Reads a resolv.conf and applies the 127.0.0.53 rule. Throws (with a message naming the file) when the file
 * cannot be read; returns an empty list when it names no nameserver.
 */
export function readResolvConf(file: string, systemdFile = SYSTEMD_RESOLV_CONF): ResolvConfResult {
  const servers = parseResolvConf(fs.readFileSync(file, 'utf8'));
  if (servers.length > 0 && servers.every((s) => s === SYSTEMD_STUB)) {
    let real: string[];
    try {
      real = parseResolvConf(fs.readFileSync(systemdFile, 'utf8')).filter((s) => s !== SYSTEMD_STUB);
    } catch (err) {
      return { servers, file, warning: `${file} names only systemd-resolved's stub ${SYSTEMD_STUB} and ${systemdFile} cannot be read (${(err as Error).message}): forwarding to the stub` };
    }
    if (real.length === 0) return { servers, file, warning: `${file} names only systemd-resolved's stub ${SYSTEMD_STUB} and ${systemdFile} names no other nameserver: forwarding to the stub` };
    return { servers: real, file: systemdFile };
  }
  return { servers, file };
}

/** True when a `to` entry is a file path rather than an address. */
export function isResolvConfPath(entry: string): boolean {
  return entry.startsWith('/') || entry.startsWith('.');
}
