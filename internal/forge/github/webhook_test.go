package github

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/previewd/previewd/internal/ghtest"
)

const secret = "It's a Secret to Everybody"

// TestSignatureVector checks Sign and Verify against GitHub's documented
// test vector and against the derived vectors over whole fixture files.
func TestSignatureVector(t *testing.T) {
	const want = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	if got := Sign(secret, []byte("Hello, World!")); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	if got := ghtest.Sign(secret, []byte("Hello, World!")); got != want {
		t.Fatalf("ghtest.Sign = %s, want %s", got, want)
	}
	if !Verify(secret, []byte("Hello, World!"), want) {
		t.Fatal("Verify rejects the documented vector")
	}
	for name, sig := range map[string]string{
		"webhooks/pull_request.opened.json": "sha256=9dc478d9f168340c18752a2c72bfbec57a9230b5a8af4e1b5cd19e4469a0e55a",
		"webhooks/ping.json":                "sha256=0781a4c342e19ba538f4541868124c3fc6deb4b56ae69a04a38e6cd5c188806a",
	} {
		if got := ghtest.Sign(secret, ghtest.Fixture(name)); got != sig {
			t.Errorf("%s: signed %s, want %s", name, got, sig)
		}
		if !Verify(secret, ghtest.Fixture(name), sig) {
			t.Errorf("%s: Verify rejects the derived vector", name)
		}
	}
	for name, sig := range map[string]string{
		"empty":           "",
		"sha1 only":       "sha1=0123",
		"no prefix":       strings.TrimPrefix(want, "sha256="),
		"one digit off":   want[:len(want)-1] + "8",
		"upper-case hex":  strings.ToUpper(want),
		"truncated":       want[:40],
		"not hex":         "sha256=zz",
		"another payload": Sign(secret, []byte("Hello, World")),
	} {
		if Verify(secret, []byte("Hello, World!"), sig) {
			t.Errorf("%s: Verify accepted %q", name, sig)
		}
	}
	if Verify("", []byte("x"), Sign("", []byte("x"))) {
		t.Error("Verify accepted a delivery with no secret configured")
	}
}

type recorder struct {
	mu   sync.Mutex
	keys []string
}

func (r *recorder) enqueue(k string) {
	r.mu.Lock()
	r.keys = append(r.keys, k)
	r.mu.Unlock()
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.keys)
}

func TestWebhook(t *testing.T) {
	type delivery struct {
		event, fixture string
		body           []byte // instead of the fixture
		sign           string // "" = sign correctly; "none" = no header; else the header
		delivery       string // X-GitHub-Delivery; "" = fresh
		contentType    string
	}
	tests := map[string]struct {
		owner, repo string
		deliveries  []delivery
		wantCodes   []int
		wantKeys    []string
	}{
		"opened":             {deliveries: []delivery{{event: "pull_request", fixture: "pull_request.opened.json"}}, wantCodes: []int{202}, wantKeys: []string{"pr-2"}},
		"opened, null body":  {deliveries: []delivery{{event: "pull_request", fixture: "pull_request.opened.null-body.json"}}, wantCodes: []int{202}, wantKeys: []string{"pr-2"}},
		"synchronize":        {deliveries: []delivery{{event: "pull_request", fixture: "pull_request.synchronize.json"}}, wantCodes: []int{202}, wantKeys: []string{"pr-2"}},
		"reopened":           {deliveries: []delivery{{event: "pull_request", fixture: "pull_request.reopened.json"}}, wantCodes: []int{202}, wantKeys: []string{"pr-2"}},
		"closed":             {deliveries: []delivery{{event: "pull_request", fixture: "pull_request.closed.json"}}, wantCodes: []int{202}, wantKeys: []string{"pr-2"}},
		"labeled":            {deliveries: []delivery{{event: "pull_request", fixture: "pull_request.labeled.json"}}, wantCodes: []int{202}, wantKeys: []string{"pr-2"}},
		"unlabeled":          {deliveries: []delivery{{event: "pull_request", fixture: "pull_request.unlabeled.json"}}, wantCodes: []int{202}, wantKeys: []string{"pr-2"}},
		"ready_for_review":   {deliveries: []delivery{{event: "pull_request", fixture: "pull_request.ready_for_review.json"}}, wantCodes: []int{202}, wantKeys: []string{"pr-2"}},
		"converted_to_draft": {deliveries: []delivery{{event: "pull_request", fixture: "pull_request.converted_to_draft.json"}}, wantCodes: []int{202}, wantKeys: []string{"pr-2"}},
		"edited (drone)": {
			owner: "bradrydzewski", repo: "drone-test-go",
			deliveries: []delivery{{event: "pull_request", fixture: "pull_request.edited.json"}}, wantCodes: []int{202}, wantKeys: []string{"pr-1"},
		},
		"ping": {deliveries: []delivery{{event: "ping", fixture: "ping.json"}}, wantCodes: []int{200}},
		"bad signature": {
			deliveries: []delivery{{event: "pull_request", fixture: "pull_request.opened.json", sign: Sign("wrong secret", ghtest.Fixture("webhooks/pull_request.opened.json"))}},
			wantCodes:  []int{401},
		},
		"missing signature": {deliveries: []delivery{{event: "pull_request", fixture: "pull_request.opened.json", sign: "none"}}, wantCodes: []int{401}},
		"signature of other bytes": {
			// The fixture re-encoded compactly is the same JSON but not
			// the same bytes.
			deliveries: []delivery{{event: "pull_request", fixture: "pull_request.opened.json", sign: Sign(secret, []byte(`{"action":"opened"}`))}},
			wantCodes:  []int{401},
		},
		"bad signature on malformed JSON": {deliveries: []delivery{{event: "pull_request", body: []byte("{not json"), sign: "sha256=00"}}, wantCodes: []int{401}},
		"malformed JSON":                  {deliveries: []delivery{{event: "pull_request", body: []byte("{not json")}}, wantCodes: []int{400}},
		"other repository":                {owner: "octocat", repo: "Hello-World", deliveries: []delivery{{event: "pull_request", fixture: "pull_request.opened.json"}}, wantCodes: []int{202}},
		"redelivery": {
			deliveries: []delivery{
				{event: "pull_request", fixture: "pull_request.opened.json", delivery: "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
				{event: "pull_request", fixture: "pull_request.opened.json", delivery: "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
			},
			wantCodes: []int{202, 200}, wantKeys: []string{"pr-2"},
		},
		"form encoded": {
			deliveries: []delivery{{event: "pull_request", body: []byte("payload=" + url.QueryEscape(string(ghtest.Fixture("webhooks/pull_request.opened.json")))), contentType: "application/x-www-form-urlencoded"}},
			wantCodes:  []int{202}, wantKeys: []string{"pr-2"},
		},
		"push to production": {
			deliveries: []delivery{{event: "push", body: []byte(`{"ref":"refs/heads/main","after":"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c","repository":{"full_name":"Codertocat/Hello-World"}}`)}},
			wantCodes:  []int{202}, wantKeys: []string{"production"},
		},
		"push elsewhere": {
			deliveries: []delivery{{event: "push", body: []byte(`{"ref":"refs/heads/changes","repository":{"full_name":"Codertocat/Hello-World"}}`)}},
			wantCodes:  []int{202},
		},
		"unhandled event": {deliveries: []delivery{{event: "issues", fixture: "pull_request.opened.json"}}, wantCodes: []int{202}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			owner, repo := "Codertocat", "Hello-World"
			if tt.owner != "" {
				owner, repo = tt.owner, tt.repo
			}
			rec := &recorder{}
			h := NewWebhook(WebhookOptions{Secret: secret, Owner: owner, Repo: repo, ProductionBranch: "main", Enqueue: rec.enqueue})
			for i, d := range tt.deliveries {
				body := d.body
				if body == nil {
					body = ghtest.Fixture("webhooks/" + d.fixture)
				}
				req := ghtest.NewDelivery("/webhooks/github", secret, d.event, body)
				switch d.sign {
				case "":
				case "none":
					req.Header.Del("X-Hub-Signature-256")
				default:
					req.Header.Set("X-Hub-Signature-256", d.sign)
				}
				if d.delivery != "" {
					req.Header.Set("X-GitHub-Delivery", d.delivery)
				}
				if d.contentType != "" {
					req.Header.Set("Content-Type", d.contentType)
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != tt.wantCodes[i] {
					t.Errorf("delivery %d: HTTP %d %s, want %d", i, w.Code, w.Body, tt.wantCodes[i])
				}
			}
			if got := rec.got(); !slices.Equal(got, tt.wantKeys) {
				t.Errorf("enqueued %v, want %v", got, tt.wantKeys)
			}
		})
	}
}

// TestWebhookNoSecret: without a configured secret nothing is accepted.
func TestWebhookNoSecret(t *testing.T) {
	rec := &recorder{}
	h := NewWebhook(WebhookOptions{Owner: "Codertocat", Repo: "Hello-World", ProductionBranch: "main", Enqueue: rec.enqueue})
	for _, sig := range []string{"", Sign("", ghtest.Fixture("webhooks/pull_request.opened.json"))} {
		req := ghtest.NewDelivery("/webhooks/github", "", "pull_request", ghtest.Fixture("webhooks/pull_request.opened.json"))
		if sig != "" {
			req.Header.Set("X-Hub-Signature-256", sig)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusUnauthorized {
			t.Errorf("HTTP %d, want 401", w.Code)
		}
	}
	if len(rec.got()) > 0 {
		t.Errorf("enqueued %v", rec.got())
	}
}

// TestWebhookTooLarge: a body over the limit is refused before it is
// read whole.
func TestWebhookTooLarge(t *testing.T) {
	rec := &recorder{}
	h := NewWebhook(WebhookOptions{Secret: secret, Owner: "Codertocat", Repo: "Hello-World", Enqueue: rec.enqueue, MaxBody: 1024})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, ghtest.NewDelivery("/webhooks/github", secret, "pull_request", ghtest.Fixture("webhooks/pull_request.opened.json")))
	if w.Code != http.StatusRequestEntityTooLarge || len(rec.got()) > 0 {
		t.Errorf("HTTP %d, enqueued %v", w.Code, rec.got())
	}
}

// TestDeliveryLRU: the dedupe set is bounded and forgets the oldest.
func TestDeliveryLRU(t *testing.T) {
	l := newLRU(2)
	for _, s := range []string{"a", "b", "c"} {
		if !l.add(s) {
			t.Fatalf("%s not new", s)
		}
	}
	if l.add("c") || l.add("b") {
		t.Error("recent ids forgotten")
	}
	if !l.add("a") {
		t.Error("oldest id kept beyond the bound")
	}
}
