import type { AnyPluginDefinition } from '../core/plugin';
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

/** A custom plugin a Corefile names: `use:` as written there, and its definition. */
export interface CustomPluginSchema {
  readonly use: string;
  readonly definition: AnyPluginDefinition;
}

/**
 * A JSON Schema of the whole configuration (built-in plugins included), for editors' YAML language servers. With
 * `custom` (the plugins a given Corefile loads with `use:`), each of those is checked against its own options
 * schema; any other `use:` entry then takes any options.
 */
export function configJsonSchema(catalog: PluginCatalog, custom: readonly CustomPluginSchema[] = []): Record<string, unknown> {
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
  const named = custom.map((c) => ({
    type: 'object',
    description: c.definition.description ?? `custom plugin ${c.definition.name}`,
    properties: { use: { const: c.use }, options: editorSchema(c.definition.options) },
    required: ['use'],
    additionalProperties: false,
  }));
  const anyCustom = {
    type: 'object',
    description: 'A custom plugin: a file path relative to this file, or an npm package name',
    properties: { use: custom.length === 0 ? { type: 'string' } : { type: 'string', not: { enum: custom.map((c) => c.use) } }, options: { type: 'object' } },
    required: ['use'],
    additionalProperties: false,
  };
  const block = editorSchema(ServerBlockSchema);
  (block.properties as Record<string, unknown>).plugins = {
    type: 'array',
    description: 'The plugin chain, in order',
    items: { anyOf: [...pluginEntries, ...named, anyCustom, { type: 'string', enum: catalog.names() }] },
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
