package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/previewd/previewd/internal/testsvc"
)

// TestSignInAndRedeployInBrowser: in headless Chromium, an anonymous
// visitor of an environment page gets the sign-in page, signs in with an
// operator token, lands back on the page and presses Redeploy; the
// redeploy happens once and the audit trail names the token and the
// dashboard.
func TestSignInAndRedeployInBrowser(t *testing.T) {
	bin := testsvc.Chromium(t)
	f := newFixture(t, 0, false)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	if err := chromedp.Do(ctx, chromedp.Navigate(f.srv.URL+"/environments/pr-3"), chromedp.WaitVisible(`#signin-form`)); err != nil {
		t.Fatal(err)
	}
	signin, err := chromedp.Run(ctx, chromedp.OuterHTML(`body`))
	if err != nil {
		t.Fatal(err)
	}
	err = chromedp.Do(ctx,
		chromedp.SendKeys(`#signin-form input[name="token"]`, operatorToken),
		chromedp.Click(`#signin-form button[type="submit"]`),
		chromedp.WaitVisible(`#redeploy`),
		chromedp.Click(`#redeploy`),
		chromedp.WaitVisible(`#redeploy`),
	)
	if err != nil {
		t.Fatal(err)
	}
	after, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(signin, "fix") {
		t.Errorf("the sign-in page shows the environment:\n%s", signin)
	}
	if after != f.srv.URL+"/environments/pr-3" {
		t.Errorf("after Redeploy the browser is at %q", after)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if r, _ := f.counts(); r == 1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.mu.Lock()
	redeployed := append([]string(nil), f.redeployed...)
	f.mu.Unlock()
	if len(redeployed) != 1 || redeployed[0] != "pr-3" {
		t.Errorf("redeployed %q, want [pr-3]", redeployed)
	}
	entries, err := f.st.Audit(context.Background(), 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Actor+" "+e.Action+" "+e.Via+" "+e.Key)
	}
	want := []string{"token:deployer redeploy dashboard pr-3", "token:deployer sign-in dashboard "}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("audit = %q, want %q", got, want)
	}
}
