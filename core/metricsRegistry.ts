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

export class MetricsHub {
  readonly registry = new Registry();
  private readonly shapes = new Map<string, string | undefined>();

  factory(subsystem: string): MetricsFactory {
    const fullName = (name: string, sub: string | undefined): string => `${METRIC_PREFIX}${sub ?? subsystem}_${name}`;
    const get = <M>(name: string, make: () => M, shape?: string): M => {
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
        return get(name, () => new Counter({ ...cfg, name, registers }), `counter ${(cfg.labelNames ?? []).join(',')}`);
      },
      gauge: (cfg) => {
        const name = fullName(cfg.name, cfg.subsystem);
        const gauge = get(name, () => new Gauge({ ...cfg, name, registers }), `gauge ${(cfg.labelNames ?? []).join(',')}`);
        // After a reload the gauge must read the new plugin instance's state, not the old one's.
        if (cfg.collect) (gauge as unknown as { collect: typeof cfg.collect }).collect = cfg.collect;
        return gauge;
      },
      histogram: (cfg) => {
        const name = fullName(cfg.name, cfg.subsystem);
        return get(name, () => new Histogram({ ...cfg, name, registers }), `histogram ${(cfg.labelNames ?? []).join(',')} ${(cfg.buckets ?? []).join(',')}`);
      },
    };
  }
}
