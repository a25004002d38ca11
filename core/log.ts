/** One line per event; JSON when asked (`log: { format: json }`), for boxes whose logs go to a collector. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger whose lines carry `name` (a plugin's). */
  child(name: string): Logger;
  /** The server's `log:` settings this logger writes with (a plugin writing lines of its own matches the format). */
  readonly options: Readonly<LogOptions>;
}

export interface LogOptions {
  level: LogLevel;
  format: 'text' | 'json';
}

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Where lines go; replaced in tests to capture them. */
export type LogSink = (line: string, level: LogLevel) => void;

const stderrSink: LogSink = (line) => {
  process.stderr.write(line + '\n');
};

export function createLogger(opts: LogOptions, sink: LogSink = stderrSink, name = ''): Logger {
  const min = ORDER[opts.level];
  const write = (level: LogLevel, msg: string, fields?: LogFields): void => {
    if (ORDER[level] < min) return;
    const time = new Date().toISOString();
    if (opts.format === 'json') {
      sink(JSON.stringify({ time, level, ...(name ? { plugin: name } : {}), msg, ...fields }, errorReplacer), level);
      return;
    }
    let line = `${time} ${level.toUpperCase()}${name ? ` [${name}]` : ''} ${msg}`;
    if (fields) for (const [k, v] of Object.entries(fields)) line += ` ${k}=${formatValue(v)}`;
    sink(line, level);
  };
  return {
    debug: (m, f) => write('debug', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
    child: (child) => createLogger(opts, sink, name ? `${name}/${child}` : child),
    options: { level: opts.level, format: opts.format },
  };
}

function formatValue(v: unknown): string {
  if (v instanceof Error) return JSON.stringify(v.message);
  if (typeof v === 'string') return /\s/.test(v) ? JSON.stringify(v) : v;
  return JSON.stringify(v);
}

function errorReplacer(_key: string, v: unknown): unknown {
  return v instanceof Error ? v.message : v;
}

/** A logger that writes nothing (tests, tools). */
export const silentLogger: Logger = createLogger({ level: 'error', format: 'text' }, () => undefined);
