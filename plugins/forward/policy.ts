/**
 * The order in which a query tries the upstreams (CoreDNS's `policy`): `random` (a fresh shuffle per query),
 * `round_robin` (each query starts one further along) and `sequential` (always first to last).
 */
export type PolicyName = 'random' | 'round_robin' | 'sequential';

export const POLICY_NAMES: readonly PolicyName[] = ['random', 'round_robin', 'sequential'];

export interface Policy {
  readonly name: PolicyName;
  /** Indexes 0..n-1 in the order to try. The array may be shared (sequential): callers never modify it. */
  order(n: number): readonly number[];
}

const IDENTITY: number[][] = [];
function identity(n: number): readonly number[] {
  let a = IDENTITY[n];
  if (a === undefined) {
    a = Array.from({ length: n }, (_, i) => i);
    IDENTITY[n] = a;
  }
  return a;
}

export function createPolicy(name: PolicyName): Policy {
  switch (name) {
    case 'sequential':
      return { name, order: identity };
    case 'round_robin': {
      let next = 0;
      return {
        name,
        order(n: number): readonly number[] {
          if (n === 1) return identity(1);
          const start = next % n;
          next = (next + 1) % 0x40000000;
          const out = new Array<number>(n);
          for (let i = 0; i < n; i++) out[i] = (start + i) % n;
          return out;
        },
      };
    }
    case 'random':
      return {
        name,
        order(n: number): readonly number[] {
          if (n === 1) return identity(1);
          const out = new Array<number>(n);
          for (let i = 0; i < n; i++) out[i] = i;
          // Fisher–Yates; Math.random is fine here: the order is not a secret, the query ID is.
          for (let i = n - 1; i > 0; i--) {
            const j = Math.floor(Math.random() * (i + 1));
            const t = out[i];
            out[i] = out[j];
            out[j] = t;
          }
          return out;
        },
      };
  }
}
