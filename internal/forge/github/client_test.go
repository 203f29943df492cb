package github

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestAppAuth: with a GitHub App, API calls carry the installation token
// that ghinstallation got from the Enterprise API (/api/v3/), and git gets
// the same token.
func TestAppAuth(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	var tokens, calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/api/v3/app/installations/34/access_tokens":
			if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
				t.Errorf("token request without the App's JWT: %q", r.Header.Get("Authorization"))
			}
			tokens.Add(1)
			w.WriteHeader(http.StatusCreated)
			b := `{"token":"ghs_installation","expires_at":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`
			w.Write([]byte(b))
		case r.URL.Path == "/api/v3/repos/o/r/pulls/1":
			calls.Add(1)
			if got := r.Header.Get("Authorization"); got != "token ghs_installation" {
				t.Errorf("API call with Authorization %q", got)
			}
			w.Write([]byte(`{"number":1}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c, err := NewClient(ClientOptions{
		APIURL: srv.URL + "/", Owner: "o", Repo: "r", CloneURL: "https://git.example.com/o/r.git",
		App: &App{ID: 12, InstallationID: 34, PrivateKey: pemKey},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, _, _, err := c.get(context.Background(), "repos/o/r/pulls/1", ""); err != nil {
			t.Fatal(err)
		}
	}
	if tokens.Load() != 1 || calls.Load() != 3 {
		t.Errorf("%d token requests, %d calls; want 1 and 3", tokens.Load(), calls.Load())
	}
	e, err := c.GitEnv(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := "GIT_CONFIG_VALUE_0=Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:ghs_installation"))
	if len(e) != 3 || e[1] != "GIT_CONFIG_KEY_0=http.https://git.example.com/.extraHeader" || e[2] != want {
		t.Errorf("GitEnv = %q", e)
	}
}
