'use strict';
// node worker.js: the background process. Every second it renders the
// documents not yet rendered (markdown to HTML, and a word count) and logs
// each one. Several workers may run: a row is taken with SKIP LOCKED.
const { pool, check } = require('./db');
const { render, words } = require('./render');

const db = pool();
const every = Number(process.env.WORKER_INTERVAL_MS || 1000);
let stopping = false;
let wake = () => {};

async function renderPending() {
  const client = await db.connect();
  try {
    for (;;) {
      await client.query('BEGIN');
      const { rows } = await client.query(
        'SELECT id, title, content FROM documents WHERE rendered_at IS NULL ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED',
      );
      if (!rows.length) {
        await client.query('COMMIT');
        return;
      }
      const d = rows[0];
      const n = words(d.content);
      await client.query('UPDATE documents SET html = $2, words = $3, rendered_at = now() WHERE id = $1', [d.id, render(d.content), n]);
      await client.query('COMMIT');
      console.log(`rendered document ${d.id} ${JSON.stringify(d.title)}: ${n} words`);
    }
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

async function loop() {
  await check(db);
  console.log(`worker: rendering documents every ${every} ms`);
  while (!stopping) {
    try {
      await renderPending();
    } catch (err) {
      console.error(`worker: ${err.message}`);
    }
    await new Promise((r) => {
      const timer = setTimeout(r, every);
      wake = () => {
        clearTimeout(timer);
        r();
      };
    });
  }
  await db.end();
}

process.on('SIGTERM', () => {
  stopping = true;
  wake();
});

loop().catch((err) => {
  console.error(`worker: ${err.message}`);
  process.exit(1);
});
