/**
 * The order in which a block's plugins run `setup`: every plugin a plugin `requires` or `uses` (when present)
 * is set up before it, so a published hook it calls during setup already has its owner's taps, whatever the
 * list order. Otherwise list order is kept. Only setup moves: the chain's order stays the list's.
 */

/** What the sort needs to know of one plugin of the block. */
export interface DependencyNode {
  readonly name: string;
  readonly requires?: readonly string[];
  readonly uses?: readonly string[];
}

export type SetupOrder =
  | { readonly ok: true; readonly order: readonly number[] }
  /** Plugins that wait for each other, in dependency order, the first repeated at the end (`a → b → a`). */
  | { readonly ok: false; readonly cycle: readonly string[] };

/** The names of `node`'s dependencies that are in the block (a `uses` entry that is absent is simply not used). */
export function dependenciesOf(node: DependencyNode): string[] {
  return [...new Set([...(node.requires ?? []), ...(node.uses ?? [])])];
}

/**
 * A stable topological sort: at each step the first plugin in list order whose dependencies are all set up.
 * Quadratic in the block's size, which is a few dozen plugins at most.
 */
export function setupOrder(nodes: readonly DependencyNode[]): SetupOrder {
  const indexOf = new Map<string, number>();
  nodes.forEach((n, i) => {
    if (!indexOf.has(n.name)) indexOf.set(n.name, i);
  });
  const deps = nodes.map((n) => dependenciesOf(n).map((d) => indexOf.get(d)).filter((i): i is number => i !== undefined));
  const done = new Array<boolean>(nodes.length).fill(false);
  const order: number[] = [];
  while (order.length < nodes.length) {
    const next = nodes.findIndex((_, i) => !done[i] && deps[i].every((d) => done[d]));
    if (next === -1) return { ok: false, cycle: findCycle(nodes, deps, done) };
    done[next] = true;
    order.push(next);
  }
  return { ok: true, order };
}

/** Every plugin left waits on another one left: walking dependencies from the first must come back round. */
function findCycle(nodes: readonly DependencyNode[], deps: readonly number[][], done: readonly boolean[]): string[] {
  const path: number[] = [];
  let at = done.indexOf(false);
  while (!path.includes(at)) {
    path.push(at);
    at = deps[at].find((d) => !done[d])!;
  }
  return [...path.slice(path.indexOf(at)), at].map((i) => nodes[i].name);
}
