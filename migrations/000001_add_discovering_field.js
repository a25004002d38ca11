'use strict';
// codexdns — migration 000001: formerly added `clients.discovering`; now empty.
//
// See 000000_create_clients.js: the `clients` table and this column are clienttrack's
// (plugins/clienttrack/migrations/000001_add_discovering_field.js adds the column where it is missing). The file
// stays so that databases that recorded it keep migrating.

/** @param {import('knex').Knex} _knex */
exports.up = async function up(_knex) {};

/** @param {import('knex').Knex} _knex */
exports.down = async function down(_knex) {};
