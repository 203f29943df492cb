'use strict';
// The database: one small pool from DATABASE_URL. The schema comes from
// the role's search_path (previewd sets it to DATABASE_SCHEMA), so every
// name here is unqualified; check refuses to run in another schema.
const { Pool } = require('pg');

function pool() {
  const url = process.env.DATABASE_URL;
  if (!url) {
    throw new Error('DATABASE_URL is not set');
  }
  return new Pool({ connectionString: url, max: 3 });
}

// check fails unless the session's schema is DATABASE_SCHEMA (when set):
// a role whose search_path is not its own schema would write elsewhere.
async function check(db) {
  const want = process.env.DATABASE_SCHEMA;
  if (!want) {
    return;
  }
  const { rows } = await db.query('SELECT current_schema() AS schema');
  if (rows[0].schema !== want) {
    throw new Error(`the session's schema is ${rows[0].schema}, not DATABASE_SCHEMA=${want}: set the role's search_path`);
  }
}

module.exports = { pool, check };
