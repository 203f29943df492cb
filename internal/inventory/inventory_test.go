package inventory

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/previewd/previewd/internal/env"
)

func item(kind env.ItemKind, name, data string) env.Item {
	it := env.Item{Kind: kind, Name: name}
	if data != "" {
		it.Data = json.RawMessage(data)
	}
	return it
}

func TestDiffChangedMerge(t *testing.T) {
	a1 := item(env.ItemObject, "a", `1`)
	a2 := item(env.ItemObject, "a", `2`)
	b := item(env.ItemObject, "b", "")
	ns := item(env.ItemNamespace, "a", "") // same name, other kind: another item
	tests := map[string]struct {
		old, new              []env.Item
		diff, changed, merged []env.Item
	}{
		"empty":          {},
		"all new":        {new: []env.Item{a1, b}, changed: []env.Item{a1, b}, merged: []env.Item{a1, b}},
		"all gone":       {old: []env.Item{a1, b}, diff: []env.Item{a1, b}, merged: []env.Item{a1, b}},
		"same":           {old: []env.Item{a1, b}, new: []env.Item{b, a1}, merged: []env.Item{a1, b}},
		"data changed":   {old: []env.Item{a1}, new: []env.Item{a2}, changed: []env.Item{a2}, merged: []env.Item{a2}},
		"kind matters":   {old: []env.Item{a1}, new: []env.Item{ns}, diff: []env.Item{a1}, changed: []env.Item{ns}, merged: []env.Item{a1, ns}},
		"one pruned":     {old: []env.Item{a1, b}, new: []env.Item{a1}, diff: []env.Item{b}, merged: []env.Item{a1, b}},
		"one added kept": {old: []env.Item{b}, new: []env.Item{b, a1}, changed: []env.Item{a1}, merged: []env.Item{b, a1}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Diff(tt.old, tt.new); !reflect.DeepEqual(got, tt.diff) {
				t.Errorf("Diff = %v, want %v", got, tt.diff)
			}
			if got := Changed(tt.old, tt.new); !reflect.DeepEqual(got, tt.changed) {
				t.Errorf("Changed = %v, want %v", got, tt.changed)
			}
			got := Merge(tt.old, tt.new)
			if len(got) == 0 && len(tt.merged) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tt.merged) {
				t.Errorf("Merge = %v, want %v", got, tt.merged)
			}
		})
	}
}

func TestMergeDoesNotModifyOld(t *testing.T) {
	old := []env.Item{item(env.ItemObject, "a", `1`)}
	Merge(old, []env.Item{item(env.ItemObject, "a", `2`)})
	if string(old[0].Data) != "1" {
		t.Fatalf("Merge changed its input: %s", old[0].Data)
	}
}

func TestIDAndHas(t *testing.T) {
	items := []env.Item{item(env.ItemRole, "preview_x", "")}
	if !Has(items, ID{env.ItemRole, "preview_x"}) || Has(items, ID{env.ItemSchema, "preview_x"}) {
		t.Fatal("Has is wrong")
	}
	if s := IDOf(items[0]).String(); s != "pg-role/preview_x" {
		t.Fatalf("String = %q", s)
	}
}
