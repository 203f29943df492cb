package database_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
)

func TestLeft(t *testing.T) {
	role := env.Item{Kind: env.ItemRole, Name: "preview_pr_1"}
	schema := env.Item{Kind: env.ItemSchema, Name: "preview_pr_1", Data: []byte(`{"database":"shop"}`)}
	other := env.Item{Kind: env.ItemRole, Name: "preview_pr_2"}
	items := []env.Item{role, schema, other}
	left := &database.LeftError{
		// Data may differ: identity is what counts, and Left returns the
		// caller's items.
		Items: []env.Item{{Kind: env.ItemSchema, Name: "preview_pr_1"}, role},
		Err:   fmt.Errorf("dropping: %w", database.ErrForeign),
	}
	for name, tc := range map[string]struct {
		err  error
		want []env.Item
	}{
		"nothing left":     {err: nil, want: nil},
		"named":            {err: left, want: []env.Item{role, schema}},
		"named, wrapped":   {err: fmt.Errorf("database: %w", left), want: []env.Item{role, schema}},
		"unknown: all":     {err: errors.New("connection refused"), want: items},
		"named, none left": {err: &database.LeftError{Err: errors.New("x")}, want: nil},
	} {
		t.Run(name, func(t *testing.T) {
			got := database.Left(items, tc.err)
			if !slices.EqualFunc(got, tc.want, func(a, b env.Item) bool {
				return a.Kind == b.Kind && a.Name == b.Name && string(a.Data) == string(b.Data)
			}) {
				t.Errorf("Left = %v; want %v", got, tc.want)
			}
		})
	}
	if !errors.Is(left, database.ErrForeign) {
		t.Error("LeftError does not wrap its reasons")
	}
	if got, want := left.Error(), "left pg-schema/preview_pr_1, pg-role/preview_pr_1: dropping: exists but was not made by previewd"; got != want {
		t.Errorf("Error() = %q; want %q", got, want)
	}
}
