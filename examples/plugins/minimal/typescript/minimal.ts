// The minimal plugin in TypeScript, compiled by its author (`npx tsc -p .`) to minimal.js, which Corefile.yaml
// names: `- use: ./plugins/minimal/typescript/dist/minimal.js`. It also publishes a hook, `answered`, that
// other plugins can tap, and tells TypeScript about it by declaration merging.
import { SyncHook } from 'tapable';
import { definePlugin, DnsResponse, Type, type Static } from 'codexdns';

/** Our published hooks: `api.hooksOf('minimal')` in another plugin is typed by this. */
export interface MinimalHooks {
  /** Called (synchronously, O(1)) with the name each time the plugin answers. */
  readonly answered: SyncHook<[string]>;
}

declare module 'codexdns' {
  interface PluginHookRegistry {
    minimal: MinimalHooks;
  }
}

const Options = Type.Object({
  name: Type.String({ minLength: 1, default: 'hello.test', description: 'The name it answers' }),
  text: Type.String({ default: 'hello from codexdns', description: 'The TXT record' }),
  ttl: Type.Integer({ minimum: 0, default: 60 }),
});
export type MinimalOptions = Static<typeof Options>;

export default definePlugin({
  name: 'minimal',
  description: 'Answers TXT for one name; every other query goes on down the chain',
  role: 'answers',
  options: Options,
  declare: (): MinimalHooks => ({ answered: new SyncHook<[string]>(['name']) }),
  setup(api, options) {
    const name = options.name.toLowerCase().replace(/\.$/, '');
    const answered = api.metrics.counter({ name: 'answered_total', help: 'Queries the minimal plugin answered' });

    api.hooks.query.tap(api.name, (ctx) => {
      if (ctx.qname !== name) return undefined;
      answered.inc();
      api.own.answered.call(ctx.qname);
      const question = ctx.message.questions![0];
      const answers = ctx.qtypeName === 'TXT' ? [{ name: question.name, type: 'TXT' as const, ttl: options.ttl, data: [options.text] }] : [];
      const res = DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [question], answers });
      res.authoritative = true;
      return res;
    });
  },
});
