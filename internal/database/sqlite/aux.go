package sqlite

import (
	"encoding/json"
	"path/filepath"
	"strings"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/env"
)

// aux is a kind of file previewd makes beside an environment's own: its
// name is prefix + key + ".sqlite" (a ".new-" name, which Collect takes
// for a temporary one), and its inventory name key + suffix, which is
// never a key.
type aux struct{ prefix, suffix, what string }

var (
	// rehearsalFile is the copy a rehearsal runs the migrations on.
	rehearsalFile = aux{prefix: ".new-rehearsal-", suffix: "$rehearsal", what: "rehearsal"}
	// nextFile is the fresh file a Reset builds; Collect removes it as
	// soon as its key is not live.
	nextFile = aux{prefix: ".new-reset-", suffix: "$next", what: "reset"}
	auxFiles = []aux{rehearsalFile, nextFile}
)

// auxPath returns key's file of kind a.
func (p *Provider) auxPath(a aux, key string) string {
	return filepath.Join(p.dir, a.prefix+key+".sqlite")
}

// auxItems returns the inventory item of t's file of kind a; none for
// production, which gets no such file.
func (p *Provider) auxItems(a aux, t database.Target) []env.Item {
	if t.Production || t.Key == env.ProductionKey || env.CheckKey(t.Key) != nil {
		return nil
	}
	data, _ := json.Marshal(itemData{Path: p.auxPath(a, t.Key)})
	return []env.Item{{Kind: env.ItemSQLite, Name: t.Key + a.suffix, Data: data}}
}

// keyOf returns the key of a file name of kind a (auxPath's base).
func (a aux) keyOf(base string) (string, bool) {
	rest, ok := strings.CutPrefix(base, a.prefix)
	if !ok {
		return "", false
	}
	key, ok := strings.CutSuffix(rest, ".sqlite")
	if !ok || env.CheckKey(key) != nil || key == env.ProductionKey {
		return "", false
	}
	return key, true
}
