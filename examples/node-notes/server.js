'use strict';
// node server.js: the web process. Listens on $HOST:$PORT.
//
//   GET  /healthz              {"status":"ok","sha":...,"key":...,"schema":...}
//   GET  /                     the documents, and a form to add one
//   GET  /documents/:id        a document, rendered
//   GET  /api/documents        [{id,title,words,rendered}]
//   POST /api/documents        {"title","content"} -> 201 the document
//   GET  /api/documents/:id    {id,title,content,html,words,renderedAt}
//   PUT  /api/documents/:id    {"title","content"}: the worker renders it again
//   POST /api/render           markdown in, HTML out (the editor's preview)
const http = require('http');
const { pool, check } = require('./db');
const { render, escape } = require('./render');

const db = pool();
const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 3000);

function send(res, code, body, type = 'application/json') {
  const text = type === 'application/json' ? JSON.stringify(body) + '\n' : body;
  res.writeHead(code, { 'Content-Type': `${type}; charset=utf-8`, 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req, limit = 1 << 20) {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks = [];
    req.on('data', (c) => {
      size += c.length;
      if (size > limit) {
        reject(Object.assign(new Error('body too large'), { status: 413 }));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function readDocument(req) {
  let doc;
  try {
    doc = JSON.parse(await readBody(req));
  } catch (err) {
    throw Object.assign(new Error(err.status ? err.message : 'body is not JSON'), { status: err.status || 400 });
  }
  const title = typeof doc.title === 'string' ? doc.title.trim() : '';
  if (!title) {
    throw Object.assign(new Error('title is required'), { status: 400 });
  }
  if (doc.content !== undefined && typeof doc.content !== 'string') {
    throw Object.assign(new Error('content must be a string'), { status: 400 });
  }
  return { title, content: doc.content || '' };
}

const view = (r) => ({ id: Number(r.id), title: r.title, content: r.content, html: r.html, words: r.words, renderedAt: r.rendered_at });

function page(title, body) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${escape(title)}</title></head><body>
<p>${escape(process.env.PREVIEW_BRANCH || 'node-notes')} at ${escape((process.env.PREVIEW_SHA || '').slice(0, 7))}</p>
${body}</body></html>`;
}

async function route(req, res) {
  const url = new URL(req.url, 'http://x');
  const p = url.pathname;
  const m = p.match(/^\/(api\/)?documents\/(\d+)$/);
  if (p === '/healthz' && req.method === 'GET') {
    const { rows } = await db.query('SELECT current_schema() AS schema');
    return send(res, 200, { status: 'ok', sha: process.env.PREVIEW_SHA || '', key: process.env.PREVIEW_KEY || '', schema: rows[0].schema });
  }
  if (p === '/api/documents' && req.method === 'GET') {
    const { rows } = await db.query('SELECT id, title, words, rendered_at FROM documents ORDER BY id');
    return send(res, 200, rows.map((r) => ({ id: Number(r.id), title: r.title, words: r.words, rendered: r.rendered_at !== null })));
  }
  if (p === '/api/documents' && req.method === 'POST') {
    const d = await readDocument(req);
    const { rows } = await db.query('INSERT INTO documents (title, content) VALUES ($1, $2) RETURNING *', [d.title, d.content]);
    return send(res, 201, view(rows[0]));
  }
  if (m && m[1] && req.method === 'PUT') {
    const d = await readDocument(req);
    const { rows } = await db.query(
      'UPDATE documents SET title = $2, content = $3, updated_at = now(), rendered_at = NULL WHERE id = $1 RETURNING *',
      [m[2], d.title, d.content],
    );
    return rows.length ? send(res, 200, view(rows[0])) : send(res, 404, { error: 'no such document' });
  }
  if (m && req.method === 'GET') {
    const { rows } = await db.query('SELECT * FROM documents WHERE id = $1', [m[2]]);
    if (!rows.length) {
      return send(res, 404, { error: 'no such document' });
    }
    if (m[1]) {
      return send(res, 200, view(rows[0]));
    }
    const d = rows[0];
    // The worker's HTML once it has rendered; until then, rendered here.
    return send(res, 200, page(d.title, `<h1>${escape(d.title)}</h1>\n${d.html ?? render(d.content)}`), 'text/html');
  }
  if (p === '/api/render' && req.method === 'POST') {
    return send(res, 200, render(await readBody(req)), 'text/html');
  }
  if (p === '/' && req.method === 'GET') {
    const { rows } = await db.query('SELECT id, title, words FROM documents ORDER BY id');
    const items = rows.map((r) => `<li><a href="/documents/${r.id}">${escape(r.title)}</a> (${r.words ?? '…'} words)</li>`).join('\n');
    return send(res, 200, page('Notes', `<h1>Notes</h1><ul>\n${items}\n</ul>`), 'text/html');
  }
  return send(res, 404, { error: 'not found' });
}

const server = http.createServer((req, res) => {
  route(req, res).catch((err) => {
    if (!err.status) {
      console.error(`${req.method} ${req.url}: ${err.message}`);
    }
    send(res, err.status || 500, { error: err.status ? err.message : 'internal error' });
  });
});

check(db)
  .then(() => {
    server.listen(port, host, () => console.log(`listening on ${host}:${port}`));
  })
  .catch((err) => {
    console.error(`server: ${err.message}`);
    process.exit(1);
  });

// SIGTERM: no new connections, the requests in flight finish, then exit
// (after 5 s regardless).
process.on('SIGTERM', () => {
  setTimeout(() => process.exit(0), 5000).unref();
  server.close(() => db.end().then(() => process.exit(0)));
  server.closeIdleConnections();
});
