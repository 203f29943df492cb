package config

import (
	"errors"
	"strings"
	"testing"
)

// TestAdminForProduction: without productionURL, production connects as
// adminURL's role: a warning on loopback, a refusal (CheckExposure) beyond
// it unless allowAdminForProduction; quiet with productionURL, with the
// allowance, or without postgres.
func TestAdminForProduction(t *testing.T) {
	const pg = "database: {kind: postgres, postgres: {adminURL: 'postgres://previewd:${PW}@db:5432/shop'"
	const auth = "auth: {anonymous: viewer}\n"
	for name, tc := range map[string]struct {
		yaml    string
		warn    bool
		refused bool
	}{
		"loopback":             {`listen: "127.0.0.1:8080"` + "\n" + pg + "}}", true, false},
		"beyond loopback":      {`listen: ":8080"` + "\n" + auth + pg + "}}", false, true},
		"allowed":              {`listen: "0.0.0.0:8080"` + "\n" + auth + pg + ", allowAdminForProduction: true}}", false, false},
		"allowed on loopback":  {`listen: "localhost:8080"` + "\n" + pg + ", allowAdminForProduction: true}}", false, false},
		"productionURL":        {`listen: ":8080"` + "\n" + auth + pg + ", productionURL: 'postgres://shop_app:x@db/shop'}}", false, false},
		"sqlite":               {`listen: ":8080"` + "\n" + auth, false, false},
		"beyond, without auth": {`listen: ":8080"` + "\n" + pg + "}}", false, true},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := Parse([]byte("forge: {git: {url: x}}\n"+tc.yaml+"\n"), "/x", lookup(map[string]string{"PW": "hunter2-secret"}))
			if err != nil {
				t.Fatal(err)
			}
			ws := c.Warnings()
			if got := len(ws) == 1 && strings.HasPrefix(ws[0], "database.postgres.productionURL: not set"); got != tc.warn || (!tc.warn && len(ws) > 0) {
				t.Errorf("warnings %q; want warning %v", ws, tc.warn)
			}
			err = c.CheckExposure()
			var es Errors
			refused := errors.As(err, &es) && strings.Contains(err.Error(), "database.postgres.productionURL: required") &&
				strings.Contains(err.Error(), "allowAdminForProduction: true")
			if refused != tc.refused {
				t.Errorf("CheckExposure = %v; want refused %v", err, tc.refused)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") || strings.Contains(strings.Join(ws, ""), "hunter2") {
				t.Errorf("a message repeats the password")
			}
		})
	}
}

// TestPasswordSecretEmpty: a passwordSecret the file sets but whose ${VAR}
// is empty is refused, naming the field; unset or set is fine.
func TestPasswordSecretEmpty(t *testing.T) {
	const base = "forge: {git: {url: x}}\ndatabase: {kind: postgres, postgres: {adminURL: 'postgres://a@db/shop'"
	for name, tc := range map[string]struct {
		yaml string
		vars map[string]string
		bad  bool
	}{
		"empty variable": {base + ", passwordSecret: '${S}'}}", map[string]string{"S": ""}, true},
		"set variable":   {base + ", passwordSecret: '${S}'}}", map[string]string{"S": "x-secret"}, false},
		"not in file":    {base + "}}", nil, false},
		"empty in file":  {base + ", passwordSecret: ''}}", nil, false},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml+"\n"), "/x", lookup(tc.vars))
			if got := err != nil && strings.Contains(err.Error(), "database.postgres.passwordSecret: empty"); got != tc.bad {
				t.Errorf("Parse: %v; want the error %v", err, tc.bad)
			}
		})
	}
}

// TestMaskingAndRefresh: masking names parse, expressions are not empty,
// and masking or a refresh needs a template that is neither production's
// database nor adminURL's, and a production database to copy from.
func TestMaskingAndRefresh(t *testing.T) {
	const base = "forge: {git: {url: x}}\ndatabase: {kind: postgres, postgres: {adminURL: 'postgres://a@db/shop', isolation: database"
	for name, tc := range map[string]struct {
		yaml string
		bad  string // "" for valid
	}{
		"valid":              {base + `, template: shop_tpl, masking: {users.email: "'u' || id", billing.cards.number: "'x'"}, refreshTemplate: {every: 24h}}}`, ""},
		"masking only":       {base + `, template: shop_tpl, masking: {users.email: "'u' || id"}}}`, ""},
		"no template":        {base + `, masking: {users.email: "'u' || id"}}}`, "database.postgres.masking: needs database.postgres.template"},
		"refresh, no tpl":    {base + `, refreshTemplate: {every: 1h}}}`, "database.postgres.refreshTemplate: needs database.postgres.template"},
		"one part":           {base + `, template: t, masking: {email: "'x'"}}}`, `database.postgres.masking: "email": want table.column`},
		"four parts":         {base + `, template: t, masking: {a.b.c.d: "'x'"}}}`, `"a.b.c.d": want table.column`},
		"empty part":         {base + `, template: t, masking: {users..email: "'x'"}}}`, `"users..email": "": want a name`},
		"quoted":             {base + `, template: t, masking: {'"Users".email': "'x'"}}}`, "quoted names are not supported"},
		"empty expression":   {base + `, template: t, masking: {users.email: " "}}}`, `"users.email": empty expression`},
		"too often":          {base + `, template: t, refreshTemplate: {every: 10s}}}`, "refreshTemplate.every: 10s is out of range"},
		"template is prod":   {base + `, template: app, productionURL: 'postgres://app@db/app', masking: {users.email: "'x'"}}}`, `template: "app" is production's database`},
		"template is admin":  {base + `, template: shop, productionURL: 'postgres://app@db/app', refreshTemplate: {every: 1h}}}`, `template: "shop" is adminURL's database`},
		"no source database": {"forge: {git: {url: x}}\ndatabase: {kind: postgres, postgres: {adminURL: 'postgres://a@db', template: t, refreshTemplate: {every: 1h}}}", "needs a production database to copy from"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml+"\n"), "/x", lookup(nil))
			switch {
			case tc.bad == "" && err != nil:
				t.Errorf("Parse: %v; want no error", err)
			case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)):
				t.Errorf("Parse: %v; want an error with %q", err, tc.bad)
			}
		})
	}
}

// TestPostgresSeed: database.postgres.seed is a path inside the
// repository: relative, without "..".
func TestPostgresSeed(t *testing.T) {
	const base = "forge: {git: {url: x}}\ndatabase: {kind: postgres, postgres: {adminURL: 'postgres://u@h/db'"
	for name, tc := range map[string]struct {
		seed string
		bad  string // "" when valid
	}{
		"unset":     {"", ""},
		"file":      {"db/seed.sql", ""},
		"dotted":    {"./seed.sql", ""},
		"absolute":  {"/etc/seed.sql", "is absolute"},
		"parent":    {"../seed.sql", `has a ".." element`},
		"inner dot": {"db/../seed.sql", `has a ".." element`},
		"root":      {".", "not a path inside"},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := Parse([]byte(base+", seed: '"+tc.seed+"'}}\n"), "/x", lookup(nil))
			if tc.bad == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.Database.Postgres.Seed != tc.seed {
					t.Errorf("seed = %q; want %q", c.Database.Postgres.Seed, tc.seed)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "database.postgres.seed: ") || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("err = %v; want database.postgres.seed: …%s", err, tc.bad)
			}
		})
	}
}
