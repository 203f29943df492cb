package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// document is one markdown document. HTML is filled in when it is shown.
type document struct {
	ID        int64     `json:"id"`
	Title     string    `json:"title"`
	Content   string    `json:"content"`
	HTML      string    `json:"html"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

const maxTitleRunes = 200

var errNotFound = errors.New("document not found")

// validationError is a problem with user input; handlers answer 400.
type validationError struct{ msg string }

func (e *validationError) Error() string { return e.msg }

// validateDocument trims the title and checks both fields.
func validateDocument(title, content string) (string, error) {
	title = strings.TrimSpace(title)
	switch {
	case !utf8.ValidString(title) || !utf8.ValidString(content):
		return "", &validationError{"title and content must be valid UTF-8"}
	case title == "":
		return "", &validationError{"title must not be empty"}
	case utf8.RuneCountInString(title) > maxTitleRunes:
		return "", &validationError{fmt.Sprintf("title must be at most %d characters", maxTitleRunes)}
	case len(content) > maxContentBytes:
		return "", &validationError{fmt.Sprintf("content must be at most %d KiB", maxContentBytes>>10)}
	}
	return title, nil
}

// store keeps documents in the documents table. Its SQL works unchanged on
// SQLite and PostgreSQL, uses unqualified table names and never prepares
// named statements (see postgresConfig).
type store struct {
	db *sql.DB
}

// now returns the time to record. It is truncated to milliseconds in UTC so a
// value reads back exactly as written from either database.
func now() time.Time {
	return time.Now().UTC().Truncate(time.Millisecond)
}

const documentColumns = "id, title, content, created_at, updated_at"

func scanDocument(row interface{ Scan(...any) error }) (document, error) {
	var d document
	err := row.Scan(&d.ID, &d.Title, &d.Content, &d.CreatedAt, &d.UpdatedAt)
	d.CreatedAt = d.CreatedAt.UTC()
	d.UpdatedAt = d.UpdatedAt.UTC()
	return d, err
}

// list returns all documents, most recently updated first.
func (s *store) list(ctx context.Context) ([]document, error) {
	rows, err := s.db.QueryContext(ctx,
		"SELECT "+documentColumns+" FROM documents ORDER BY updated_at DESC, id DESC")
	if err != nil {
		return nil, fmt.Errorf("list documents: %w", err)
	}
	defer rows.Close()
	docs := []document{}
	for rows.Next() {
		d, err := scanDocument(rows)
		if err != nil {
			return nil, fmt.Errorf("list documents: %w", err)
		}
		docs = append(docs, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list documents: %w", err)
	}
	return docs, nil
}

// get returns one document or errNotFound.
func (s *store) get(ctx context.Context, id int64) (document, error) {
	d, err := scanDocument(s.db.QueryRowContext(ctx,
		"SELECT "+documentColumns+" FROM documents WHERE id = $1", id))
	if errors.Is(err, sql.ErrNoRows) {
		return document{}, errNotFound
	}
	if err != nil {
		return document{}, fmt.Errorf("get document %d: %w", id, err)
	}
	return d, nil
}

// create inserts a document and returns it.
func (s *store) create(ctx context.Context, title, content string) (document, error) {
	title, err := validateDocument(title, content)
	if err != nil {
		return document{}, err
	}
	t := now()
	d := document{Title: title, Content: content, CreatedAt: t, UpdatedAt: t}
	err = s.db.QueryRowContext(ctx,
		"INSERT INTO documents (title, content, created_at, updated_at) VALUES ($1, $2, $3, $3) RETURNING id",
		title, content, t).Scan(&d.ID)
	if err != nil {
		return document{}, fmt.Errorf("create document: %w", err)
	}
	return d, nil
}

// update replaces a document's title and content, returning errNotFound if
// it does not exist.
func (s *store) update(ctx context.Context, id int64, title, content string) (document, error) {
	title, err := validateDocument(title, content)
	if err != nil {
		return document{}, err
	}
	res, err := s.db.ExecContext(ctx,
		"UPDATE documents SET title = $1, content = $2, updated_at = $3 WHERE id = $4",
		title, content, now(), id)
	if err != nil {
		return document{}, fmt.Errorf("update document %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return document{}, fmt.Errorf("update document %d: %w", id, err)
	} else if n == 0 {
		return document{}, errNotFound
	}
	return s.get(ctx, id)
}

// delete removes a document, returning errNotFound if it does not exist.
func (s *store) delete(ctx context.Context, id int64) error {
	res, err := s.db.ExecContext(ctx, "DELETE FROM documents WHERE id = $1", id)
	if err != nil {
		return fmt.Errorf("delete document %d: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("delete document %d: %w", id, err)
	}
	if n == 0 {
		return errNotFound
	}
	return nil
}
