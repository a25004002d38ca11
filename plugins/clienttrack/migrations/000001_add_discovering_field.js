'use strict';
// clienttrack — migration 000001: `clients.discovering`.
//
// A new client's row is written at once with discovering = true while its discovery job is queued or
// running (DESIGN §1.2); the row is completed, discovering = false, when the job finishes. NOT NULL with a
// default so rows written by a build without discovery (or before this migration) read as "not discovering".
//
// A database migrated by the former core migration of the same name already has the column: kept as it is.

/** @param {import('knex').Knex} knex */
exports.up = async function up(knex) {
  if (await knex.schema.hasColumn('clients', 'discovering')) return;
  await knex.schema.alterTable('clients', (t) => {
    t.boolean('discovering').notNullable().defaultTo(false);
  });
};

/** @param {import('knex').Knex} knex */
exports.down = async function down(knex) {
  // On SQLite knex drops a column by rebuilding the table (copy, drop, rename) and recreating its indexes;
  // on PostgreSQL it is a plain ALTER TABLE … DROP COLUMN.
  await knex.schema.alterTable('clients', (t) => {
    t.dropColumn('discovering');
  });
};
