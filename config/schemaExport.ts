import type { PluginCatalog } from './load';
import { LogSchema, ServerBlockSchema, StorageSchema } from './coreSchema';
import { eachSubschema, toJsonSchema, type JsonSchema } from './validate';

/**
 * TypeBox marks every property required, defaults included (the validator fills defaults before it checks);
 * an editor does not, so a property with a default is optional in what we export.
 */
function optionalDefaults(s: JsonSchema): JsonSchema {
  const props = s.properties as Record<string, JsonSchema> | undefined;
  if (props !== undefined && Array.isArray(s.required)) {
    const required = (s.required as string[]).filter((k) => props[k]?.default === undefined);
    if (required.length > 0) s.required = required;
    else delete s.required;
  }
  eachSubschema(s, optionalDefaults);
  return s;
}

function editorSchema(schema: Parameters<typeof toJsonSchema>[0]): JsonSchema {
  return optionalDefaults(toJsonSchema(schema));
}

/** A JSON Schema of the whole configuration (built-in plugins included), for editors' YAML language servers. */
export function configJsonSchema(catalog: PluginCatalog): Record<string, unknown> {
  const pluginEntries = catalog.names().map((name) => {
    const def = catalog.get(name)!;
    return {
      type: 'object',
      description: def.description,
      properties: { [name]: { anyOf: [editorSchema(def.options), { type: 'null' }] } },
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
  const block = editorSchema(ServerBlockSchema);
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
      storage: editorSchema(StorageSchema),
      log: editorSchema(LogSchema),
      shutdown_grace: { type: ['string', 'number'], description: 'Duration such as 5s', default: '5s' },
      reload: { type: 'object', properties: { watch: { type: 'boolean', default: true }, debounce: { type: ['string', 'number'], default: '500ms' } }, additionalProperties: false },
    },
    required: ['servers'],
    additionalProperties: false,
  };
}
