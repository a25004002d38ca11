'use strict';
// The smallest useful plugin: it answers one name with a TXT record and hands every other query to the rest
// of the chain. Load it with `- use: ./plugins/minimal/index.js` (options under `options:`).
const { definePlugin, Type, DnsResponse } = require('codexdns');

module.exports = definePlugin({
  name: 'minimal',
  description: 'Answers TXT for one name; every other query goes on down the chain',
  role: 'answers',
  options: Type.Object({
    name: Type.String({ minLength: 1, default: 'hello.test', description: 'The name it answers' }),
    text: Type.String({ default: 'hello from codexdns', description: 'The TXT record' }),
    ttl: Type.Integer({ minimum: 0, default: 60 }),
  }),
  setup(api, options) {
    // ctx.qname is lower case without the trailing dot: normalise the option the same way, once.
    const name = options.name.toLowerCase().replace(/\.$/, '');
    const answered = api.metrics.counter({ name: 'answered_total', help: 'Queries the minimal plugin answered' });

    api.hooks.query.tap(api.name, (ctx) => {
      if (ctx.qname !== name) return undefined; // not ours: the next plugin gets the query
      answered.inc();
      const question = ctx.message.questions[0];
      const answers = ctx.qtypeName === 'TXT' ? [{ name: question.name, type: 'TXT', ttl: options.ttl, data: [options.text] }] : [];
      const res = DnsResponse.fromPacket({ type: 'response', flags: 0, questions: [question], answers });
      res.authoritative = true; // we own this name: NODATA for the other types, and AA set
      return res;
    });

    api.log.info('answering', { name });
  },
});
