package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestPreviews: cookies and tickets are bound to their preview, tickets
// are one-time and expire, production stays public unless protected, and
// Strip leaves only the app's own cookies and headers.
func TestPreviews(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	p := NewPreviews(PreviewOptions{Access: PreviewSignIn, Secret: []byte("s"), Now: clock})
	if !p.Protects(false) || p.Protects(true) {
		t.Fatal("signin must protect previews and leave production public")
	}
	if !NewPreviews(PreviewOptions{Access: PreviewPassword, ProtectProduction: true}).Protects(true) {
		t.Fatal("protectProduction must protect production")
	}
	if NewPreviews(PreviewOptions{}).Protects(false) {
		t.Fatal("the default is public")
	}
	if _, err := p.Ticket("pr-1", Principal{Name: Anonymous, Kind: KindAnonymous, Role: Viewer}); !errors.Is(err, ErrTooWeak) {
		t.Fatalf("anonymous ticket: %v", err)
	}
	tk, err := p.Ticket("pr-1", TokenPrincipal("ci", Viewer))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Redeem(tk, "pr-2"); !errors.Is(err, ErrWrongPreview) {
		t.Fatalf("ticket on another preview: %v", err)
	}
	if name, err := p.Redeem(tk, "pr-1"); err != nil || name != "token:ci" {
		t.Fatalf("redeem: %q, %v", name, err)
	}
	if _, err := p.Redeem(tk, "pr-1"); !errors.Is(err, ErrTicketUsed) {
		t.Fatalf("replayed ticket: %v", err)
	}
	late, _ := p.Ticket("pr-1", TokenPrincipal("ci", Viewer))
	now = now.Add(2 * TicketTTL)
	if _, err := p.Redeem(late, "pr-1"); !errors.Is(err, ErrExpired) {
		t.Fatalf("late ticket: %v", err)
	}
	// A ticket is not a cookie.
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(&http.Cookie{Name: PreviewCookieName, Value: late})
	if ok, _ := p.Allow(r, "pr-1"); ok {
		t.Fatal("a ticket must not open a preview as a cookie")
	}

	// A new password ends the old password's cookies.
	old := NewPreviews(PreviewOptions{Access: PreviewPassword, Password: "old password 1", Secret: []byte("s")})
	w := httptest.NewRecorder()
	if err := old.Issue(w, httptest.NewRequest("GET", "/", nil), "pr-1", ""); err != nil {
		t.Fatal(err)
	}
	c := w.Result().Cookies()[0]
	r = httptest.NewRequest("GET", "/", nil)
	r.AddCookie(c)
	if ok, err := old.Allow(r, "pr-1"); !ok || err != nil {
		t.Fatalf("own cookie: %v, %v", ok, err)
	}
	rotated := NewPreviews(PreviewOptions{Access: PreviewPassword, Password: "new password 2", Secret: []byte("s")})
	if ok, _ := rotated.Allow(r, "pr-1"); ok {
		t.Fatal("a cookie of the old password must not open the preview")
	}

	r = httptest.NewRequest("GET", "/", nil)
	r.Header.Add("Cookie", "a=1; "+PreviewCookieName+"=x")
	r.Header.Add("Cookie", "b=2")
	r.Header.Set(BypassHeader, "t")
	r.Header.Set("Authorization", "Bearer app-token")
	p.Strip(r)
	if got := r.Header.Get("Cookie"); got != "a=1; b=2" || r.Header.Get(BypassHeader) != "" || r.Header.Get("Authorization") != "Bearer app-token" {
		t.Fatalf("after Strip: %v", r.Header)
	}
}
