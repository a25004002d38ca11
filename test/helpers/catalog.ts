// The plugin catalog a test passes to startServer/parseConfig: the built-in plugins plus the test's own.
import type { PluginCatalog } from '../../config/load';
import { definePlugin, type AnyPluginDefinition } from '../../core/plugin';
import { Type } from '../../config/types';
import { DnsResponse } from '../../core/response';
import { builtinCatalog } from '../../server/catalog';

/** The built-in catalog plus `defs` (definePlugin results), each found under its `name`. */
export function catalogWith(...defs: ReadonlyArray<{ readonly name: string }>): PluginCatalog {
  const extra = new Map(defs.map((d) => [d.name, d as unknown as AnyPluginDefinition]));
  return { get: (name) => extra.get(name) ?? builtinCatalog.get(name), names: () => [...builtinCatalog.names(), ...extra.keys()] };
}

/** Answers every A query with 192.0.2.1, TTL 60 (a stand-in for forward). */
export const answerer = definePlugin({
  name: 'answerer',
  options: Type.Object({}),
  role: 'answers',
  setup(api) {
    api.hooks.query.tap('answerer', (ctx) => {
      const q = ctx.message.questions![0];
      return DnsResponse.fromPacket({ type: 'response', id: 0, flags: 0, questions: [q], answers: q.type === 'A' ? [{ name: q.name, type: 'A', ttl: 60, data: '192.0.2.1' }] : [] });
    });
  },
});
