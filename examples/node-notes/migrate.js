'use strict';
// node migrate.js: applies migrations/*.sql in name order, each in its own
// transaction, and records them in schema_migrations. Applied files are
// skipped, so it runs before every version.
const fs = require('fs');
const path = require('path');
const { pool, check } = require('./db');

async function migrate(db, dir) {
  await check(db);
  await db.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now())`);
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.sql')).sort();
  const applied = [];
  for (const file of files) {
    const sql = fs.readFileSync(path.join(dir, file), 'utf8');
    const client = await db.connect();
    try {
      await client.query('BEGIN');
      // One migrator at a time; the second finds the file applied.
      await client.query("SELECT pg_advisory_xact_lock(hashtext('node-notes migrate'))");
      const { rowCount } = await client.query('SELECT 1 FROM schema_migrations WHERE version = $1', [file]);
      if (rowCount === 0) {
        await client.query(sql);
        await client.query('INSERT INTO schema_migrations (version) VALUES ($1)', [file]);
        applied.push(file);
      }
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw new Error(`${file}: ${err.message}`);
    } finally {
      client.release();
    }
  }
  return applied;
}

if (require.main === module) {
  const db = pool();
  migrate(db, path.join(__dirname, 'migrations'))
    .then((applied) => {
      console.log(applied.length ? `applied ${applied.join(', ')}` : 'no new migrations');
      return db.end();
    })
    .catch((err) => {
      console.error(`migrate: ${err.message}`);
      process.exit(1);
    });
}

module.exports = { migrate };
