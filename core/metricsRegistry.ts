import type { CounterConfiguration, GaugeConfiguration, HistogramConfiguration, LabelValues } from 'prom-client';
import { fastCounter, fastHistogram, type FastCounter, type FastHistogram } from './fastMetrics';
import { Counter, Gauge, Histogram, Registry } from './promClient';

export const METRIC_PREFIX = 'codexdns_';

/**
 * What a mirrored counter already added to Prometheus, by series. Keep it with the totals it mirrors (the tracker,
 * the log, the cache instance): a reload that keeps them then never counts them twice, and new totals start from 0.
 */
export type ReportedTotals = Map<string, number>;

/** A monotonic total kept as a plain number (`n++` on the answer path, no prom-client call per query). */
export interface MirroredTotal<L extends string> {
  readonly labels?: LabelValues<L>;
  readonly value: number;
  /** Where this total's last reported value is kept, when not `reported()` of the counter. */
  readonly reported?: ReportedTotals;
}

/** A level (queue depth, entries, state) read when scraped. */
export interface MirroredLevel<L extends string> {
  readonly labels?: LabelValues<L>;
  readonly value: number;
}

type Named<C> = Omit<C, 'registers' | 'collect'> & {
  subsystem?: string;
  /**
   * Whose numbers these are, when several instances feed one metric (one per server block: the block's name).
   * Each source's latest reader is kept and all are read when scraped; without it, the latest reader replaces
   * every other.
   */
  source?: string;
};

export type MirroredCounterConfiguration<L extends string> = Named<CounterConfiguration<L>> & {
  /** The totals now; each series rises by what its total grew since the last scrape (a smaller total restarted from 0). */
  totals(): Iterable<MirroredTotal<L>>;
  reported?: () => ReportedTotals;
};

export type MirroredGaugeConfiguration<L extends string> = Named<GaugeConfiguration<L>> & {
  /** The levels now; `undefined` keeps the last ones (nothing to read, e.g. the source is closing). */
  levels(): Iterable<MirroredLevel<L>> | undefined;
  /** Remove every series before setting the levels, so a source that went away leaves no stale series. */
  reset?: boolean;
};

/** A metric kept up to date from plain numbers when scraped; `update()` brings it up to date now (before a source goes away). */
export interface Mirror<M> {
  readonly metric: M;
  update(): void;
  /** Stops reading this source (its block went away), unless a newer reader of the same source replaced it. */
  release(): void;
}

/**
 * A plugin's view of the process-wide Prometheus registry. Names get the `codexdns_<subsystem>_` prefix, and
 * asking again for a metric of the same name returns the existing one: a reload never registers a metric twice.
 */
export interface MetricsFactory {
  counter<L extends string>(cfg: Omit<CounterConfiguration<L>, 'registers'> & { subsystem?: string }): Counter<L>;
  gauge<L extends string>(cfg: Omit<GaugeConfiguration<L>, 'registers'> & { subsystem?: string }): Gauge<L>;
  histogram<L extends string>(cfg: Omit<HistogramConfiguration<L>, 'registers'> & { subsystem?: string }): Histogram<L>;
  /**
   * A counter that follows totals kept as plain numbers: what the answer path can afford (prom-client's `inc()`
   * hashes the label set on every call). Asked again after a reload, it reads the new `totals`.
   */
  mirrorCounter<L extends string>(cfg: MirroredCounterConfiguration<L>): Mirror<Counter<L>>;
  /** A gauge set from `levels` when scraped (after a reload, the latest setup's `levels`). */
  mirrorGauge<L extends string>(cfg: MirroredGaugeConfiguration<L>): Mirror<Gauge<L>>;
  /**
   * A counter or histogram for what is recorded on every query: bind a child once (`child([...values])`) and keep
   * it; recording is a plain add, with no label hashing (core/fastMetrics.ts). Exposed as prom-client's are.
   */
  fastCounter(cfg: FastMetricConfiguration): FastCounter;
  fastHistogram(cfg: FastMetricConfiguration & { buckets: readonly number[] }): FastHistogram;
  /** The shared registry (what `/metrics` serves). */
  readonly registry: Registry;
}

export interface FastMetricConfiguration {
  name: string;
  help: string;
  labelNames: readonly string[];
  subsystem?: string;
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
  /** The readers of each mirrored metric, by source. */
  private readonly readers = new Map<string, Map<string, () => void>>();

  private readersOf(name: string): Map<string, () => void> {
    let r = this.readers.get(name);
    if (r === undefined) this.readers.set(name, (r = new Map()));
    return r;
  }

  factory(subsystem: string): MetricsFactory {
    const fullName = (name: string, sub: string | undefined): string => `${METRIC_PREFIX}${metricSubsystem(sub ?? subsystem)}_${name}`;
    const get = <M>(name: string, make: () => M, shape?: string, labelNames?: readonly string[]): M => {
      checkNames(name, labelNames);
      const existing = this.registry.getSingleMetric(name);
      if (existing !== undefined && this.shapes.get(name) === shape) return existing as unknown as M;
      // A new metric, or one whose type or labels changed (an edited plugin): the old series go.
      if (existing !== undefined) this.registry.removeSingleMetric(name);
      this.readers.delete(name);
      this.shapes.set(name, shape);
      return make();
    };
    const registers = [this.registry];
    const counter = <L extends string>(cfg: Omit<CounterConfiguration<L>, 'registers'> & { subsystem?: string }): Counter<L> => {
      const name = fullName(cfg.name, cfg.subsystem);
      return get(name, () => new Counter({ ...cfg, name, registers }), `counter ${(cfg.labelNames ?? []).join(',')}`, cfg.labelNames);
    };
    const gauge = <L extends string>(cfg: Omit<GaugeConfiguration<L>, 'registers'> & { subsystem?: string }): Gauge<L> => {
      const name = fullName(cfg.name, cfg.subsystem);
      const g = get(name, () => new Gauge({ ...cfg, name, registers }), `gauge ${(cfg.labelNames ?? []).join(',')}`, cfg.labelNames);
      // After a reload the gauge must read the new plugin instance's state, not the old one's.
      if (cfg.collect) (g as unknown as { collect: typeof cfg.collect }).collect = cfg.collect;
      return g;
    };
    return {
      registry: this.registry,
      counter,
      gauge,
      fastCounter: (cfg) => {
        const name = fullName(cfg.name, cfg.subsystem);
        checkNames(name, cfg.labelNames);
        return fastCounter(this.registry, name, cfg.help, cfg.labelNames);
      },
      fastHistogram: (cfg) => {
        const name = fullName(cfg.name, cfg.subsystem);
        checkNames(name, cfg.labelNames);
        return fastHistogram(this.registry, name, cfg.help, cfg.labelNames, cfg.buckets);
      },
      mirrorCounter: <L extends string>(cfg: MirroredCounterConfiguration<L>): Mirror<Counter<L>> => {
        const { totals, reported, source: _source, ...rest } = cfg;
        const c = counter<L>(rest);
        const labelNames = cfg.labelNames ?? [];
        const update = (): void => {
          for (const t of totals()) {
            const marks = t.reported ?? reported?.();
            if (marks === undefined) throw new Error(`metric ${fullName(cfg.name, cfg.subsystem)}: a mirrored total needs \`reported\` (on the total or the counter) to know what was already counted`);
            const key = t.labels === undefined ? cfg.name : `${cfg.name}|${labelNames.map((l) => t.labels?.[l] ?? '').join('|')}`;
            const last = marks.get(key) ?? 0;
            marks.set(key, t.value);
            // inc(0) too: every series shows from the first scrape (a drop counter that stays 0 is news).
            const d = t.value >= last ? t.value - last : t.value;
            if (t.labels === undefined) c.inc(d);
            else c.inc(t.labels, d);
          }
        };
        // This source's reader replaces its previous one (a reload reads the new totals); other sources' stay.
        // (After counter(): a metric made afresh starts with no readers.)
        const name = fullName(cfg.name, cfg.subsystem);
        const readers = this.readersOf(name);
        const source = cfg.source ?? '';
        readers.set(source, update);
        (c as unknown as { collect: () => void }).collect = () => {
          for (const read of this.readers.get(name)?.values() ?? []) read();
        };
        return { metric: c, update, release: () => release(readers, source, update) };
      },
      mirrorGauge: <L extends string>(cfg: MirroredGaugeConfiguration<L>): Mirror<Gauge<L>> => {
        const { levels, reset, source: _source, ...rest } = cfg;
        const name = fullName(cfg.name, cfg.subsystem);
        const source = cfg.source ?? '';
        const set = (g: Gauge<L>, now: Iterable<MirroredLevel<L>>): void => {
          for (const l of now) {
            if (l.labels === undefined) g.set(l.value);
            else g.set(l.labels, l.value);
          }
        };
        const read = levels as () => Iterable<MirroredLevel<string>> | undefined;
        const hub = this;
        const g: Gauge<L> = gauge<L>({
          ...rest,
          collect() {
            const all = [...(hub.readers.get(name)?.values() ?? [])].map((r) => (r as typeof read)());
            // Nothing to read (the sources are closing): keep the last levels.
            if (all.every((x) => x === undefined)) return;
            if (reset) g.reset();
            for (const now of all) if (now !== undefined) set(g, now as Iterable<MirroredLevel<L>>);
          },
        });
        // After gauge(): a metric made afresh starts with no readers.
        const readers = this.readersOf(name);
        readers.set(source, read);
        const update = (): void => {
          const now = levels();
          if (now !== undefined) set(g, now);
        };
        return { metric: g, update, release: () => release(readers, source, read) };
      },
      histogram: (cfg) => {
        const name = fullName(cfg.name, cfg.subsystem);
        return get(name, () => new Histogram({ ...cfg, name, registers }), `histogram ${(cfg.labelNames ?? []).join(',')} ${(cfg.buckets ?? []).join(',')}`, cfg.labelNames);
      },
    };
  }
}

/** Drops a source's reader, unless a newer one (the same source after a reload) has taken its place. */
function release(readers: Map<string, () => void>, source: string, reader: () => unknown): void {
  if (readers.get(source) === reader) readers.delete(source);
}

/** A factory whose mirrors read one source (a server block's instance) beside the others, and let go of it together. */
export interface SourceMetricsFactory extends MetricsFactory {
  /** Stops reading this source in every mirror it made (at shutdown; a successor of the same source is kept). */
  release(): void;
}

export function forSource(factory: MetricsFactory, source: string): SourceMetricsFactory {
  const made: Array<{ update(): void; release(): void }> = [];
  return {
    ...factory,
    mirrorCounter: <L extends string>(cfg: MirroredCounterConfiguration<L>): Mirror<Counter<L>> => {
      const m = factory.mirrorCounter<L>({ ...cfg, source });
      made.push(m);
      return m;
    },
    mirrorGauge: <L extends string>(cfg: MirroredGaugeConfiguration<L>): Mirror<Gauge<L>> => {
      const m = factory.mirrorGauge<L>({ ...cfg, source });
      made.push(m);
      return m;
    },
    release: () => {
      // A reload sets up the successor before this instance shuts down: what was counted since the last scrape is
      // reported now, or it would be lost with the reader.
      for (const m of made) {
        m.update();
        m.release();
      }
    },
  };
}
