'use strict';
// Markdown to HTML with marked. Raw HTML in a document is shown as text,
// not passed through: documents are user input.
const { Marked } = require('marked');

const escape = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

const marked = new Marked({ gfm: true });
marked.use({ renderer: { html: ({ text }) => escape(text) } });

function render(markdown) {
  return marked.parse(markdown || '');
}

function words(markdown) {
  const m = (markdown || '').match(/[\p{L}\p{N}'’-]+/gu);
  return m ? m.length : 0;
}

module.exports = { render, words, escape };
