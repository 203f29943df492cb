package ghtest

import (
	"embed"
	"encoding/json"
	"fmt"
	"path"
	"sync"
)

//go:embed testdata
var testdata embed.FS

// Fixture returns the bytes of a fixture file under testdata, e.g.
// "webhooks/pull_request.opened.json". It panics if there is none: the
// fixtures are part of the package.
func Fixture(name string) []byte {
	b, err := testdata.ReadFile(path.Join("testdata", name))
	if err != nil {
		panic(fmt.Sprintf("ghtest: no fixture %s: %v", name, err))
	}
	return b
}

var (
	decodedMu sync.Mutex
	decoded   = map[string]any{}
)

// template returns a deep copy of a decoded fixture, for a response to be
// built from by changing values (never shapes).
func template(name string) any {
	decodedMu.Lock()
	v, ok := decoded[name]
	if !ok {
		if err := json.Unmarshal(Fixture(name), &v); err != nil {
			decodedMu.Unlock()
			panic(fmt.Sprintf("ghtest: fixture %s: %v", name, err))
		}
		decoded[name] = v
	}
	decodedMu.Unlock()
	return clone(v)
}

func object(name string) map[string]any { return template(name).(map[string]any) }

func clone(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = clone(x)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, x := range v {
			s[i] = clone(x)
		}
		return s
	}
	return v
}

// mapping returns a recorded WireMock mapping's response: status,
// headers and body.
func mapping(name string) (status int, headers map[string]any, body string) {
	m := object(name)
	resp := m["response"].(map[string]any)
	status = int(resp["status"].(float64))
	headers, _ = resp["headers"].(map[string]any)
	body, _ = resp["body"].(string)
	return status, headers, body
}

// obj returns v[key] as an object, panicking with the path when the
// fixture does not have that shape.
func obj(v map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		next, ok := v[k].(map[string]any)
		if !ok {
			panic(fmt.Sprintf("ghtest: fixture has no object %q", k))
		}
		v = next
	}
	return v
}
