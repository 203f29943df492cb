package env

import "encoding/json"

// ItemKind names a kind of thing an environment owns.
type ItemKind string

// The kinds of inventory item. Each is created by one component, which is
// also the one that removes it.
const (
	ItemWorkDir   ItemKind = "workdir"   // a checkout of one SHA
	ItemProcess   ItemKind = "process"   // a running app process group
	ItemSQLite    ItemKind = "sqlite"    // a database file
	ItemRole      ItemKind = "pg-role"   // a PostgreSQL role
	ItemSchema    ItemKind = "pg-schema" // a PostgreSQL schema
	ItemDatabase  ItemKind = "pg-database"
	ItemNamespace ItemKind = "k8s-namespace"
	ItemObject    ItemKind = "k8s-object"
)

// Item is one thing an environment owns, recorded in the store before or as
// it is created, so that teardown can find it after a crash.
type Item struct {
	Kind ItemKind `json:"kind"`
	// Name identifies the item within its kind (a path, a role name, a pid).
	Name string `json:"name"`
	// Data holds what the owner needs to remove or adopt it.
	Data json.RawMessage `json:"data,omitempty"`
}

// Find returns the items of the given kind.
func Find(items []Item, kind ItemKind) []Item {
	var out []Item
	for _, it := range items {
		if it.Kind == kind {
			out = append(out, it)
		}
	}
	return out
}
