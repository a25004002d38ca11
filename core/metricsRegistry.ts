import { Counter, Gauge, Histogram, Registry, type CounterConfiguration, type GaugeConfiguration, type HistogramConfiguration } from 'prom-client';

export const METRIC_PREFIX = 'codexdns_';

/**
 * A plugin's view of the process-wide Prometheus registry. Names get the `codexdns_<subsystem>_` prefix, and
 * asking again for a metric of the same name returns the existing one: a reload never registers a metric twice.
 */
export interface MetricsFactory {
  counter<L extends string>(cfg: Omit<CounterConfiguration<L>, 'registers'> & { subsystem?: string }): Counter<L>;
  gauge<L extends string>(cfg: Omit<GaugeConfiguration<L>, 'registers'> & { subsystem?: string }): Gauge<L>;
  histogram<L extends string>(cfg: Omit<HistogramConfiguration<L>, 'registers'> & { subsystem?: string }): Histogram<L>;
  /** The shared registry (what `/metrics` serves). */
  readonly registry: Registry;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A plugin name as a metric subsystem: `quiet-hours` → `quiet_hours` (Prometheus allows [a-zA-Z0-9_:] only). */
export function metricSubsystem(plugin: string): string {
  const s = plugin.replace(/[^a-zA-Z0-9_]/g, '_');
  return /^[0-9]/.test(s) ? `_${s}` : s;
}

/** Checks what prom-client would refuse with a bare `Invalid metric name`, naming the metric and the rule. */
function checkNames(name: string, labelNames: readonly string[] | undefined): void {
  if (!METRIC_NAME.test(name)) {
    throw new Error(`metric ${JSON.stringify(name)}: a metric name may hold only letters, digits, _ and : and must not start with a digit`);
  }
  for (const l of labelNames ?? []) {
    if (!LABEL_NAME.test(l) || l.startsWith('__')) {
      throw new Error(`metric ${name}: label ${JSON.stringify(l)} must be letters, digits and _, not starting with a digit or __`);
    }
  }
}

export class MetricsHub {
  readonly registry = new Registry();
  private readonly shapes = new Map<string, string | undefined>();

  factory(subsystem: string): MetricsFactory {
    const fullName = (name: string, sub: string | undefined): string => `${METRIC_PREFIX}${metricSubsystem(sub ?? subsystem)}_${name}`;
    const get = <M>(name: string, make: () => M, shape?: string, labelNames?: readonly string[]): M => {
      checkNames(name, labelNames);
      const existing = this.registry.getSingleMetric(name);
      if (existing !== undefined && this.shapes.get(name) === shape) return existing as unknown as M;
      // A new metric, or one whose type or labels changed (an edited plugin): the old series go.
      if (existing !== undefined) this.registry.removeSingleMetric(name);
      this.shapes.set(name, shape);
      return make();
    };
    const registers = [this.registry];
    return {
      registry: this.registry,
      counter: (cfg) => {
        const name = fullName(cfg.name, cfg.subsystem);
        return get(name, () => new Counter({ ...cfg, name, registers }), `counter ${(cfg.labelNames ?? []).join(',')}`, cfg.labelNames);
      },
      gauge: (cfg) => {
        const name = fullName(cfg.name, cfg.subsystem);
        const gauge = get(name, () => new Gauge({ ...cfg, name, registers }), `gauge ${(cfg.labelNames ?? []).join(',')}`, cfg.labelNames);
        // After a reload the gauge must read the new plugin instance's state, not the old one's.
        if (cfg.collect) (gauge as unknown as { collect: typeof cfg.collect }).collect = cfg.collect;
        return gauge;
      },
      histogram: (cfg) => {
        const name = fullName(cfg.name, cfg.subsystem);
        return get(name, () => new Histogram({ ...cfg, name, registers }), `histogram ${(cfg.labelNames ?? []).join(',')} ${(cfg.buckets ?? []).join(',')}`, cfg.labelNames);
      },
    };
  }
}
