package app

import (
	"bytes"
	"html/template"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"
)

// markdown renders GitHub-flavoured markdown. It keeps goldmark's safe
// default: raw HTML in the input is replaced by a comment and links with
// dangerous schemes such as javascript: are dropped, so the output can be put
// into a page as is. Never add html.WithUnsafe() here.
var markdown = goldmark.New(goldmark.WithExtensions(extension.GFM))

// maxContentBytes bounds a document's content (and anything sent to
// /api/render).
const maxContentBytes = 512 << 10

// renderMarkdown converts markdown source to safe HTML.
func renderMarkdown(src string) (template.HTML, error) {
	var buf bytes.Buffer
	if err := markdown.Convert([]byte(src), &buf); err != nil {
		return "", err
	}
	// Safe: goldmark escapes text and omits raw HTML (see above).
	return template.HTML(buf.String()), nil
}
