// Package inventory is what an environment owns: the identity of an item,
// the difference between two inventories and their merge, and the Recorder
// every part that creates things writes to before it creates them.
//
// The items themselves are env.Item, shared by every part; this package
// holds only the rules over them, as kustomize-controller's inventory does.
package inventory

import (
	"context"
	"slices"

	"github.com/previewd/previewd/internal/env"
)

// ID identifies an item: two items with the same ID are the same thing
// (their Data may differ, e.g. a newer applied version of one object).
type ID struct {
	Kind env.ItemKind
	Name string
}

// IDOf returns the identity of it.
func IDOf(it env.Item) ID { return ID{Kind: it.Kind, Name: it.Name} }

// String is the ID for people and logs: kind/name.
func (id ID) String() string { return string(id.Kind) + "/" + id.Name }

// Diff returns the items of old whose identity is not in new: what an
// environment owned before and no longer does (to prune). The order of old
// is kept.
func Diff(old, new []env.Item) []env.Item {
	want := make(map[ID]bool, len(new))
	for _, it := range new {
		want[IDOf(it)] = true
	}
	var out []env.Item
	for _, it := range old {
		if !want[IDOf(it)] {
			out = append(out, it)
		}
	}
	return out
}

// Changed returns the items of new that old lacks, or holds with other
// Data: what must be recorded (again).
func Changed(old, new []env.Item) []env.Item {
	have := make(map[ID]string, len(old))
	for _, it := range old {
		have[IDOf(it)] = string(it.Data)
	}
	var out []env.Item
	for _, it := range new {
		if data, ok := have[IDOf(it)]; !ok || data != string(it.Data) {
			out = append(out, it)
		}
	}
	return out
}

// Merge returns old with new's items added, an item of new replacing the
// one of old with the same identity. Items keep old's order, new ones
// follow in new's order.
func Merge(old, new []env.Item) []env.Item {
	out := slices.Clone(old)
	at := make(map[ID]int, len(out))
	for i, it := range out {
		at[IDOf(it)] = i
	}
	for _, it := range new {
		if i, ok := at[IDOf(it)]; ok {
			out[i] = it
			continue
		}
		at[IDOf(it)] = len(out)
		out = append(out, it)
	}
	return out
}

// Has reports whether items hold an item with id.
func Has(items []env.Item, id ID) bool {
	return slices.ContainsFunc(items, func(it env.Item) bool { return IDOf(it) == id })
}

// Recorder records what an environment owns. Every part that creates
// something (the database provider's caller, each runtime, the notifiers)
// records it here before or as it creates it, and forgets it only once it
// is really gone, so teardown after a crash finds it and what failed to
// delete stays recorded to be retried.
type Recorder interface {
	// Items returns what the environment owns.
	Items(ctx context.Context, key string) ([]env.Item, error)
	// PutItem records it (replacing the item of the same identity).
	PutItem(ctx context.Context, key string, it env.Item) error
	// DeleteItem forgets it; forgetting what is not recorded is no error.
	DeleteItem(ctx context.Context, key string, it env.Item) error
}
