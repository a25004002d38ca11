'use strict';
// querylog — its tables, recorded in knex_migrations_querylog (run through api.storage.migrate(dir, 'querylog')),
// so removing the plugin from Corefile.yaml never blocks start-up.
//
// Plain CommonJS: knex require()s migrations and this folder ships as-is (no compiling).
// Times are BIGINT epoch milliseconds, as in the core `clients` table (same value on both databases).

/** @param {import('knex').Knex} knex */
exports.up = async function up(knex) {
  await knex.schema.createTable('querylog', (t) => {
    // The id is the order of arrival (rows are inserted in the order the ring received them): pages are read
    // newest first by id, and the cursor is an id, so paging never skips or repeats a row.
    t.bigIncrements('id').primary();
    t.bigInteger('t').notNullable();
    t.string('client', 64).notNullable();
    t.string('name', 255).notNullable();
    t.integer('qtype').notNullable();
    // -1: no reply was sent (a rate limiter's drop).
    t.integer('rcode').notNullable();
    t.string('answered_by', 64).notNullable();
    t.string('upstream', 64).nullable();
    t.integer('duration_us').notNullable();
    // bit 0 truncated, bit 1 blocked, bit 2 answered from the cache: one small column instead of three.
    t.integer('flags').notNullable().defaultTo(0);
    // A device's page and the log filtered by client, newest first; retention and time ranges. No index on
    // the name: the log is searched by substring (which no B-tree serves) and every index costs disk on an SD card.
    t.index(['client', 'id'], 'querylog_client_id_idx');
    t.index(['t'], 'querylog_t_idx');
  });
  // Counts per hour, kept as the log is written, so no page scans the whole log. kind: t (total, key ''),
  // c (client), d (domain), b (blocked domain), r (rcode), a (answered by).
  await knex.schema.createTable('querylog_hourly', (t) => {
    t.bigInteger('hour').notNullable();
    t.string('kind', 1).notNullable();
    t.string('key', 255).notNullable();
    t.bigInteger('queries').notNullable().defaultTo(0);
    t.bigInteger('blocked').notNullable().defaultTo(0);
    t.bigInteger('cached').notNullable().defaultTo(0);
    t.bigInteger('failed').notNullable().defaultTo(0);
    t.bigInteger('duration_us').notNullable().defaultTo(0);
    t.primary(['kind', 'hour', 'key']);
  });
};

/** @param {import('knex').Knex} knex */
exports.down = async function down(knex) {
  await knex.schema.dropTableIfExists('querylog_hourly');
  await knex.schema.dropTableIfExists('querylog');
};
