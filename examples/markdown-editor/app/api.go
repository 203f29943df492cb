package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// maxBodyBytes bounds request bodies (JSON and forms): the largest document
// plus room for the title and encoding.
const maxBodyBytes = maxContentBytes + 64<<10

// apiError is the body of every JSON error response.
type apiError struct {
	Error string `json:"error"`
}

// documentInput is the body of POST and PUT /api/documents.
type documentInput struct {
	Title   string `json:"title"`
	Content string `json:"content"`
}

func (s *server) apiList(w http.ResponseWriter, r *http.Request) {
	docs, err := s.store.list(r.Context())
	if err != nil {
		s.internalError(w, r, err, true)
		return
	}
	for i := range docs {
		if err := withHTML(&docs[i]); err != nil {
			s.internalError(w, r, err, true)
			return
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Documents []document `json:"documents"`
	}{docs})
}

func (s *server) apiCreate(w http.ResponseWriter, r *http.Request) {
	var in documentInput
	if !s.decodeJSON(w, r, &in) {
		return
	}
	d, err := s.store.create(r.Context(), in.Title, in.Content)
	if err != nil {
		s.apiStoreError(w, r, err)
		return
	}
	s.log.Info("document created", "id", d.ID)
	w.Header().Set("Location", fmt.Sprintf("/api/documents/%d", d.ID))
	s.writeDocument(w, r, http.StatusCreated, d)
}

func (s *server) apiGet(w http.ResponseWriter, r *http.Request) {
	id, ok := documentID(r)
	if !ok {
		s.apiStoreError(w, r, errNotFound)
		return
	}
	d, err := s.store.get(r.Context(), id)
	if err != nil {
		s.apiStoreError(w, r, err)
		return
	}
	s.writeDocument(w, r, http.StatusOK, d)
}

func (s *server) apiUpdate(w http.ResponseWriter, r *http.Request) {
	id, ok := documentID(r)
	if !ok {
		s.apiStoreError(w, r, errNotFound)
		return
	}
	var in documentInput
	if !s.decodeJSON(w, r, &in) {
		return
	}
	d, err := s.store.update(r.Context(), id, in.Title, in.Content)
	if err != nil {
		s.apiStoreError(w, r, err)
		return
	}
	s.log.Info("document updated", "id", d.ID)
	s.writeDocument(w, r, http.StatusOK, d)
}

func (s *server) apiDelete(w http.ResponseWriter, r *http.Request) {
	id, ok := documentID(r)
	if !ok {
		s.apiStoreError(w, r, errNotFound)
		return
	}
	if err := s.store.delete(r.Context(), id); err != nil {
		s.apiStoreError(w, r, err)
		return
	}
	s.log.Info("document deleted", "id", id)
	w.WriteHeader(http.StatusNoContent)
}

// renderInput is the body of POST /api/render.
type renderInput struct {
	Content string `json:"content"`
}

// apiRender renders markdown for the editor's live preview. The HTML is safe
// to insert into the page: raw HTML in the input is omitted.
func (s *server) apiRender(w http.ResponseWriter, r *http.Request) {
	var in renderInput
	if !s.decodeJSON(w, r, &in) {
		return
	}
	if len(in.Content) > maxContentBytes {
		writeJSON(w, http.StatusRequestEntityTooLarge, apiError{fmt.Sprintf("content must be at most %d KiB", maxContentBytes>>10)})
		return
	}
	html, err := renderMarkdown(in.Content)
	if err != nil {
		s.internalError(w, r, err, true)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, struct {
		HTML string `json:"html"`
	}{string(html)})
}

// documentID parses the {id} path segment. An id that is not a positive
// integer names no document.
func documentID(r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	return id, err == nil && id > 0
}

func withHTML(d *document) error {
	html, err := renderMarkdown(d.Content)
	if err != nil {
		return fmt.Errorf("render document %d: %w", d.ID, err)
	}
	d.HTML = string(html)
	return nil
}

func (s *server) writeDocument(w http.ResponseWriter, r *http.Request, code int, d document) {
	if err := withHTML(&d); err != nil {
		s.internalError(w, r, err, true)
		return
	}
	writeJSON(w, code, d)
}

// apiStoreError answers an error from the store: 404, 400 or 500.
func (s *server) apiStoreError(w http.ResponseWriter, r *http.Request, err error) {
	var verr *validationError
	switch {
	case errors.Is(err, errNotFound):
		writeJSON(w, http.StatusNotFound, apiError{"document not found"})
	case errors.As(err, &verr):
		writeJSON(w, http.StatusBadRequest, apiError{verr.Error()})
	default:
		s.internalError(w, r, err, true)
	}
}

// decodeJSON reads a single JSON value from the request body into v. On
// failure it answers 400 (or 413 for an oversized body) and returns false.
func (s *server) decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	dec := json.NewDecoder(r.Body)
	err := dec.Decode(v)
	if err == nil {
		// Exactly one value: anything after it is an error too.
		if !errors.Is(dec.Decode(&struct{}{}), io.EOF) {
			err = errors.New("unexpected data after the JSON value")
		}
	}
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeJSON(w, http.StatusRequestEntityTooLarge, apiError{fmt.Sprintf("request body must be at most %d KiB", tooBig.Limit>>10)})
		return false
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("empty body")
	}
	writeJSON(w, http.StatusBadRequest, apiError{"invalid JSON: " + err.Error()})
	return false
}
