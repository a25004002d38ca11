/** One problem found in a configuration file, with where it is. */
export interface ConfigIssue {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  readonly plugin?: string;
  readonly option?: string;
  readonly message: string;
  readonly severity: 'error' | 'warning';
}

export function formatIssue(i: ConfigIssue): string {
  const where = `${i.file}:${i.line}:${i.col}`;
  const plugin = i.plugin ? ` plugin ${i.plugin}:` : '';
  const option = i.option ? ` option ${i.option}:` : '';
  const level = i.severity === 'warning' ? ' warning:' : '';
  return `${where}${level}${plugin}${option} ${i.message}`;
}

/** Thrown when a configuration cannot be used; carries every problem found, not just the first. */
export class ConfigError extends Error {
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[]) {
    super(issues.filter((i) => i.severity === 'error').map(formatIssue).join('\n'));
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

/**
 * Thrown by a plugin's setup for a semantic problem with one of its options (a bad CIDR, an unreadable file):
 * the loader turns it into a ConfigIssue at that option's line and column.
 */
export class OptionError extends Error {
  readonly option: string;
  constructor(option: string, message: string) {
    super(message);
    this.name = 'OptionError';
    this.option = option;
  }
}

/** `dhcp.leases[0]` → `['dhcp', 'leases', 0]`: where an OptionError's option is in the YAML. */
export function optionPath(option: string): (string | number)[] {
  return option.split('.').flatMap((s) => s.split(/\[(\d+)\]/).filter(Boolean).map((x) => (/^\d+$/.test(x) ? Number(x) : x)));
}
