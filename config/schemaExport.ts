import type { PluginCatalog } from './load';
import { LogSchema, ServerBlockSchema, StorageSchema } from './coreSchema';
import { toJsonSchema } from './validate';

/** A JSON Schema of the whole configuration (built-in plugins included), for editors' YAML language servers. */
export function configJsonSchema(catalog: PluginCatalog): Record<string, unknown> {
  const pluginEntries = catalog.names().map((name) => {
    const def = catalog.get(name)!;
    return {
      type: 'object',
      description: def.description,
      properties: { [name]: { anyOf: [toJsonSchema(def.options), { type: 'null' }] } },
      required: [name],
      additionalProperties: false,
    };
  });
  const custom = {
    type: 'object',
    description: 'A custom plugin: a file path relative to this file, or an npm package name',
    properties: { use: { type: 'string' }, options: { type: 'object' } },
    required: ['use'],
    additionalProperties: false,
  };
  const block = toJsonSchema(ServerBlockSchema);
  (block.properties as Record<string, unknown>).plugins = {
    type: 'array',
    description: 'The plugin chain, in order',
    items: { anyOf: [...pluginEntries, custom, { type: 'string', enum: catalog.names() }] },
  };
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'codexdns Corefile.yaml',
    type: 'object',
    properties: {
      servers: { type: 'array', items: block, minItems: 1 },
      storage: toJsonSchema(StorageSchema),
      log: toJsonSchema(LogSchema),
      shutdown_grace: { type: ['string', 'number'], description: 'Duration such as 5s', default: '5s' },
      reload: { type: 'object', properties: { watch: { type: 'boolean', default: true }, debounce: { type: ['string', 'number'], default: '500ms' } }, additionalProperties: false },
    },
    required: ['servers'],
    additionalProperties: false,
  };
}
