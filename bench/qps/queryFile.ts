import fs from 'node:fs';

/** Writes a dnsperf query file of `count` lines, in chunks (the miss sets hold millions of names). */
export async function writeLines(file: string, count: number, line: (i: number) => string): Promise<void> {
  const ws = fs.createWriteStream(file);
  const chunk = 10_000;
  for (let i = 0; i < count; i += chunk) {
    let s = '';
    for (let j = i; j < Math.min(count, i + chunk); j++) s += line(j);
    if (!ws.write(s)) await new Promise<void>((r) => ws.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => ws.end((err?: Error | null) => (err ? reject(err) : resolve())));
}
