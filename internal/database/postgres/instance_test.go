package postgres

import (
	"errors"
	"slices"
	"testing"

	"github.com/previewd/previewd/internal/database"
)

// comment returns the marker comment on name's role.
func (f *fixture) comment(name string) string {
	f.t.Helper()
	return scalar[string](f, f.db, "SELECT COALESCE(shobj_description(oid, 'pg_authid'), '') FROM pg_roles WHERE rolname = $1", name)
}

// TestCollectScopedToInstance: two previewds (instances shop and blog) and
// `previewd db create` share one server; each Collect removes only its own
// orphans, never the other's nor the CLI's, and a previewd before
// instances left objects that no instance collects until one adopts them.
func TestCollectScopedToInstance(t *testing.T) {
	for _, iso := range []string{IsolationSchema, IsolationDatabase} {
		t.Run(iso, func(t *testing.T) {
			f := setup(t)
			with := func(instance, owner string) *Provider {
				o := f.cfg(iso)
				o.Instance, o.Owner = instance, owner
				return f.provider(o)
			}
			shop, blog, cli, old := with("shop", ""), with("blog", ""), with("shop", OwnerCLI), with("", "")
			ks, kb, kc, kl := key("shop"), key("blog"), key("ci"), key("old")
			f.ensure(shop, ks)
			f.ensure(blog, kb)
			f.ensure(cli, kc)
			f.ensure(old, kl)
			ns, nb, nc, nl := mustName(t, ks), mustName(t, kb), mustName(t, kc), mustName(t, kl)
			if got, want := f.comment(ns), "previewd:env="+ks+"/instance=shop"; got != want {
				t.Fatalf("marker %q; want %q", got, want)
			}
			if got, want := f.comment(nc), "previewd:env="+kc+"/instance=shop/owner=cli"; got != want {
				t.Fatalf("CLI's marker %q; want %q", got, want)
			}

			// blog cannot take shop's name over.
			if _, err := blog.Ensure(f.ctx, database.Target{Key: ks}); !errors.Is(err, ErrForeign) {
				t.Fatalf("blog's Ensure of shop's %s: %v; want ErrForeign", ks, err)
			}

			removed, err := shop.Collect(f.ctx, map[string]bool{})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(removed, "role "+ns) || slices.ContainsFunc(removed, func(s string) bool {
				return s == "role "+nb || s == "role "+nc || s == "role "+nl
			}) {
				t.Fatalf("shop collected %v; want %s's only", removed, ns)
			}
			if f.state(ns, ks) != "" {
				t.Fatalf("shop's orphan %s left: %s", ns, f.state(ns, ks))
			}
			for _, n := range []string{nb, nc, nl} {
				if !f.exists("role", n) {
					t.Fatalf("shop's Collect removed %s", n)
				}
			}
			if _, err := blog.Collect(f.ctx, map[string]bool{}); err != nil {
				t.Fatal(err)
			}
			if f.exists("role", nb) || !f.exists("role", nc) || !f.exists("role", nl) {
				t.Fatalf("after blog's Collect: blog %v, cli %v, old %v; want false, true, true", f.exists("role", nb), f.exists("role", nc), f.exists("role", nl))
			}
			// The CLI's own provider does not collect it either.
			if _, err := cli.Collect(f.ctx, map[string]bool{}); err != nil {
				t.Fatal(err)
			}
			if !f.exists("role", nc) {
				t.Fatal("Collect removed what db create made")
			}

			// serve using the CLI's database keeps it the CLI's, and its
			// teardown leaves it; db drop removes it.
			f.ensure(shop, kc)
			if got := f.comment(nc); got != "previewd:env="+kc+"/instance=shop/owner=cli" {
				t.Fatalf("serve's Ensure re-marked the CLI's role: %q", got)
			}
			if err := shop.Drop(f.ctx, shop.Items(database.Target{Key: kc})); err != nil {
				t.Fatal(err)
			}
			if !f.exists("role", nc) {
				t.Fatal("serve's Drop removed what db create made")
			}
			if err := cli.Drop(f.ctx, cli.Items(database.Target{Key: kc})); err != nil {
				t.Fatal(err)
			}
			if s := f.state(nc, kc); s != "" {
				t.Fatalf("db drop left %s", s)
			}

			// db create over serve's environment makes it the CLI's.
			kx := key("shared")
			f.ensure(shop, kx)
			f.ensure(cli, kx)
			if _, err := shop.Collect(f.ctx, map[string]bool{}); err != nil {
				t.Fatal(err)
			}
			if !f.exists("role", mustName(t, kx)) {
				t.Fatal("serve collected an environment db create took over")
			}
			if err := cli.Drop(f.ctx, cli.Items(database.Target{Key: kx})); err != nil {
				t.Fatal(err)
			}

			// An object of a previewd before instances is adopted by the
			// instance that deploys its key again, and then collected.
			f.ensure(shop, kl)
			if got := f.comment(nl); got != "previewd:env="+kl+"/instance=shop" {
				t.Fatalf("adopted marker %q", got)
			}
			if _, err := shop.Collect(f.ctx, map[string]bool{}); err != nil {
				t.Fatal(err)
			}
			if s := f.state(nl, kl); s != "" {
				t.Fatalf("adopted orphan left: %s", s)
			}
		})
	}
}
