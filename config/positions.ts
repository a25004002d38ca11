import { isMap, isPair, isScalar, isSeq, LineCounter, type Document, type Node } from 'yaml';

export type Path = readonly (string | number)[];

export interface Position {
  readonly line: number;
  readonly col: number;
}

/** Finds line:column of values (and of keys, for unknown options) in a parsed YAML document. */
export class PositionIndex {
  constructor(private readonly doc: Document, private readonly lines: LineCounter) {}

  /** The position of the value at `path`, or of the nearest ancestor that exists. */
  of(path: Path): Position {
    let node: unknown = this.doc.contents;
    let best = this.at(node);
    for (const seg of path) {
      const next = child(node, seg, false);
      if (next === undefined) break;
      node = next;
      best = this.at(node) ?? best;
    }
    return best ?? { line: 1, col: 1 };
  }

  /** The position of the key `key` inside the map at `path` (where an unknown option is written). */
  keyOf(path: Path, key: string): Position {
    let node: unknown = this.doc.contents;
    for (const seg of path) {
      const next = child(node, seg, false);
      if (next === undefined) return this.of(path);
      node = next;
    }
    const k = child(node, key, true);
    return this.at(k) ?? this.of(path);
  }

  private at(node: unknown): Position | undefined {
    const range = (node as Node | undefined)?.range;
    if (!range) return undefined;
    const { line, col } = this.lines.linePos(range[0]);
    return { line, col };
  }
}

function child(node: unknown, seg: string | number, wantKey: boolean): unknown {
  if (isSeq(node) && typeof seg === 'number') return node.items[seg];
  if (isMap(node)) {
    for (const item of node.items) {
      if (!isPair(item)) continue;
      const key = isScalar(item.key) ? item.key.value : item.key;
      if (String(key) === String(seg)) return wantKey ? item.key : item.value ?? item.key;
    }
  }
  return undefined;
}
