package auth

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"
)

const secretA = "a-secret-0123456789abcdef0123"

func TestRoles(t *testing.T) {
	for _, tc := range []struct {
		have, need Role
		ok         bool
	}{
		{Viewer, Viewer, true}, {Viewer, Operator, false}, {Operator, Viewer, true}, {Operator, Admin, false},
		{Admin, Admin, true}, {None, Viewer, false}, {None, None, true},
	} {
		if got := tc.have.Allows(tc.need); got != tc.ok {
			t.Errorf("%s.Allows(%s) = %v", tc.have, tc.need, got)
		}
	}
	for _, s := range []string{"viewer", "operator", "admin"} {
		if r, err := ParseRole(s); err != nil || r.String() != s {
			t.Errorf("ParseRole(%q) = %v, %v", s, r, err)
		}
	}
	if _, err := ParseRole("root"); err == nil {
		t.Error("ParseRole(root) = nil error")
	}
}

func TestAuthenticate(t *testing.T) {
	a := New(Options{Tokens: []Token{{Name: "ci", Secret: secretA, Role: Admin}}, Anonymous: Viewer})
	tests := map[string]struct {
		header string
		name   string
		role   Role
		err    error
	}{
		"none":         {"", Anonymous, Viewer, nil},
		"bearer":       {"Bearer " + secretA, "token:ci", Admin, nil},
		"lower scheme": {"bearer " + secretA, "token:ci", Admin, nil},
		"unknown":      {"Bearer " + secretA + "x", "", None, ErrUnknownToken},
		"prefix":       {"Bearer " + secretA[:10], "", None, ErrUnknownToken},
		"empty":        {"Bearer ", "", None, ErrUnknownToken},
		"basic":        {"Basic Y2k6eA==", "", None, ErrNotBearer},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			p, err := a.Authenticate(r)
			if !errors.Is(err, tt.err) || p.Name != tt.name || p.Role != tt.role {
				t.Errorf("Authenticate = %+v, %v; want %s %s, %v", p, err, tt.name, tt.role, tt.err)
			}
		})
	}
}

// TestTokensConstantTime: the checker keeps only hashes (the secret is in
// none of its fields) and compares hashes of equal length with
// subtle.ConstantTimeCompare over every token, without returning early.
func TestTokensConstantTime(t *testing.T) {
	ts := NewTokens([]Token{{Name: "ci", Secret: secretA, Role: Admin}})
	if dump := fmt.Sprintf("%#v", ts.list); strings.Contains(dump, secretA) {
		t.Errorf("Tokens keeps the secret in clear: %s", dump)
	}
	f, err := parser.ParseFile(gotoken.NewFileSet(), "token.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	var returnsInLoop bool
	ast.Inspect(f, func(n ast.Node) bool {
		fn, ok := n.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "Check" {
			return true
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok {
					if x, ok := sel.X.(*ast.Ident); ok {
						calls = append(calls, x.Name+"."+sel.Sel.Name)
					}
				}
			case *ast.ForStmt, *ast.RangeStmt:
				ast.Inspect(n, func(m ast.Node) bool {
					if _, ok := m.(*ast.ReturnStmt); ok {
						returnsInLoop = true
					}
					if b, ok := m.(*ast.BinaryExpr); ok && b.Op == gotoken.EQL {
						if id, ok := b.X.(*ast.Ident); ok && id.Name == "s" {
							returnsInLoop = true
						}
					}
					return true
				})
			}
			return true
		})
		return false
	})
	sort.Strings(calls)
	joined := strings.Join(calls, " ")
	if !strings.Contains(joined, "sha256.Sum256") || !strings.Contains(joined, "subtle.ConstantTimeCompare") || returnsInLoop {
		t.Errorf("Tokens.Check calls %v (returns inside its loop: %v); want sha256.Sum256 and subtle.ConstantTimeCompare over every token", calls, returnsInLoop)
	}
}

func TestSigner(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := NewSigner([]byte("k"), "session", func() time.Time { return now })
	v, err := s.Sign(map[string]string{"a": "b"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := s.Verify(v, &got); err != nil || got["a"] != "b" {
		t.Fatalf("Verify = %v, %v", got, err)
	}
	other := NewSigner([]byte("k"), "preview", func() time.Time { return now })
	if err := other.Verify(v, &got); !errors.Is(err, ErrSignature) {
		t.Errorf("another purpose's signer: %v, want ErrSignature", err)
	}
	now = now.Add(time.Minute)
	if err := s.Verify(v, &got); !errors.Is(err, ErrExpired) {
		t.Errorf("at expiry: %v, want ErrExpired", err)
	}
	for _, bad := range []string{"", ".", "x", "x.", ".x", "a.b.c", strings.Repeat("x", 5000)} {
		if err := s.Verify(bad, &got); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrSignature) {
			t.Errorf("Verify(%.20q) = %v", bad, err)
		}
	}
}

// BenchmarkAuthCheck is the cost of finding a request's principal and
// checking its role, per request: a bearer token among ten, and a
// session cookie. It reports the median as p50-ns (the goal: ≤ 50 µs).
func BenchmarkAuthCheck(b *testing.B) {
	var ts []Token
	for i := range 10 {
		ts = append(ts, Token{Name: fmt.Sprint("t", i), Secret: fmt.Sprintf("%s-%d", secretA, i), Role: Operator})
	}
	a := New(Options{Tokens: ts, Sessions: NewSessions([]byte(secretA), time.Hour, nil)})
	w := httptest.NewRecorder()
	if _, err := a.Sessions().Issue(w, httptest.NewRequest("GET", "/", nil), TokenPrincipal("t9", Operator)); err != nil {
		b.Fatal(err)
	}
	cookie := w.Result().Cookies()[0]
	for _, tc := range []struct {
		name string
		set  func(*http.Request)
	}{
		{"bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+ts[9].Secret) }},
		{"session", func(r *http.Request) { r.AddCookie(cookie) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := httptest.NewRequest("POST", "/api/v1/sync", nil)
			tc.set(r)
			took := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				p, err := a.Authenticate(r)
				if err != nil || !p.Role.Allows(Operator) {
					b.Fatalf("%+v, %v", p, err)
				}
				took = append(took, time.Since(start))
			}
			sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
			b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
		})
	}
}
