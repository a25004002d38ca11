'use strict';
// clienttrack — migration 000000: the `clients` table (one row per tracked client). The table is clienttrack's:
// other plugins read it through clienttrack's hooks, never with SQL of their own.
//
// Plain CommonJS on purpose: knex loads migrations with require(), and this folder ships as-is in the npm
// package (see package.json "files"), so it must not need compiling.
//
// Databases created before the table moved here already have it: the core migration of the same name
// (migrations/000000_create_clients.js, now empty) made it. Those rows are the user's data, so an existing table
// is adopted as it is, never recreated.
//
// Times (first_seen, last_seen, discovered_at) are stored as BIGINT epoch milliseconds, not as
// TIMESTAMP/DATETIME:
//   - portable: SQLite has no native date type (knex would store text or integers depending on the driver),
//     and PostgreSQL timestamps come back as Date objects in the process time zone; an integer is the same
//     value on both and round-trips exactly;
//   - cheap: `last_seen = MAX(last_seen, ?)` in the upsert, the retention `last_seen < ?` and the ORDER BY
//     for the index/API are plain integer compares on an indexed column, no parsing or time-zone rules.
// (PostgreSQL returns BIGINT as a string; plugins/clienttrack/store.ts converts rows back to numbers.)

/** @param {import('knex').Knex} knex */
exports.up = async function up(knex) {
  if (await knex.schema.hasTable('clients')) return;
  await knex.schema.createTable('clients', (t) => {
    // 64 characters: the longest IPv6 text form (45) plus room for a zone id ("fe80::1%eth0").
    t.string('ip', 64).notNullable().primary();
    t.string('hostname', 255).nullable();
    t.string('mac', 32).nullable();
    t.string('vendor', 255).nullable();
    t.string('discovery_method', 32).nullable();
    t.bigInteger('first_seen').notNullable();
    t.bigInteger('last_seen').notNullable();
    t.bigInteger('query_count').notNullable().defaultTo(0);
    t.bigInteger('discovered_at').nullable();
    t.text('last_error').nullable();
    // The start-up index load (most recent first) and retention (`last_seen < cutoff`) both walk this index.
    t.index(['last_seen'], 'clients_last_seen_idx');
  });
};

/** @param {import('knex').Knex} knex */
exports.down = async function down(knex) {
  await knex.schema.dropTableIfExists('clients');
};
