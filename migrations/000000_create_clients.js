'use strict';
// codexdns — migration 000000: formerly created the `clients` table; now empty.
//
// The table belongs to the clienttrack plugin and is created by its own migrations
// (plugins/clienttrack/migrations/, recorded in `knex_migrations_clienttrack`), which adopt a table this
// migration made on an older install. The file stays because knex refuses to migrate when `knex_migrations`
// names a file that is missing, and databases created before the move have this name recorded. Its `down` does
// nothing either: undoing the core set must not drop a table the core no longer owns (`codexdns migrate down`
// of the clienttrack set does).

/** @param {import('knex').Knex} _knex */
exports.up = async function up(_knex) {};

/** @param {import('knex').Knex} _knex */
exports.down = async function down(_knex) {};
