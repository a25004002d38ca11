// The same plugin as index.js, as an ES module (a .mjs file, or a .js file under a package.json with
// "type": "module"). Each edit of an ES module plugin loads a new copy that Node cannot unload: see
// docs/writing-plugins.md, "What a reload costs".
import { definePlugin, Type, DnsResponse } from 'codexdns';

export default definePlugin({
  name: 'minimal',
  description: 'Answers TXT for one name; every other query goes on down the chain',
  role: 'answers',
  options: Type.Object({
    name: Type.String({ minLength: 1, default: 'hello.test', description: 'The name it answers' }),
    text: Type.String({ default: 'hello from codexdns', description: 'The TXT record' }),
    ttl: Type.Integer({ minimum: 0, default: 60 }),
  }),
  setup(api, options) {
    const name = options.name.toLowerCase().replace(/\.$/, '');
    const answered = api.metrics.counter({ name: 'answered_total', help: 'Queries the minimal plugin answered' });

    api.hooks.query.tap(api.name, (ctx) => {
      if (ctx.qname !== name) return undefined;
      answered.inc();
      const question = ctx.message.questions[0];
      const answers = ctx.qtypeName === 'TXT' ? [{ name: question.name, type: 'TXT', ttl: options.ttl, data: [options.text] }] : [];
      const res = DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [question], answers });
      res.authoritative = true;
      return res;
    });

    api.log.info('answering', { name });
  },
});
