package github

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/previewd/previewd/internal/githubapi"
)

// checkState is one named check's state.
type checkState int

const (
	checkMissing checkState = iota
	checkPending
	checkGreen
	checkFailed
)

// checkHold reads the check runs and commit statuses of sha and returns
// why it must wait ("waiting for checks: ci, lint" or "checks failed:
// lint"), or "" once every check in WaitForChecks is green. A SHA found
// green is remembered and not read again.
func (s *Source) checkHold(ctx context.Context, sha string) (string, error) {
	s.mu.Lock()
	green := s.green[sha]
	s.mu.Unlock()
	if green {
		return "", nil
	}
	states, err := s.readChecks(ctx, sha)
	if err != nil {
		return "", fmt.Errorf("reading checks of %s: %w", sha, err)
	}
	hold := holdReason(s.o.WaitForChecks, states)
	s.mu.Lock()
	if len(s.green) > 10000 {
		clear(s.green)
	}
	if len(s.holds) > 10000 {
		clear(s.holds)
	}
	if hold == "" {
		s.green[sha] = true
		delete(s.holds, sha)
	} else {
		s.holds[sha] = hold
	}
	s.mu.Unlock()
	return hold, nil
}

// holdReason is the pure part of checkHold.
func holdReason(want []string, states map[string]checkState) string {
	var failed, waiting []string
	for _, name := range want {
		switch states[name] {
		case checkGreen:
		case checkFailed:
			failed = append(failed, name)
		default:
			waiting = append(waiting, name)
		}
	}
	switch {
	case len(failed) > 0:
		return "checks failed: " + strings.Join(failed, ", ")
	case len(waiting) > 0:
		return "waiting for checks: " + strings.Join(waiting, ", ")
	}
	return ""
}

func (s *Source) readChecks(ctx context.Context, sha string) (map[string]checkState, error) {
	states := map[string]checkState{}
	repo := fmt.Sprintf("repos/%s/%s/commits/%s", url.PathEscape(s.c.Owner()), url.PathEscape(s.c.Repo()), url.PathEscape(sha))
	// Commit statuses first: a check run of the same name wins.
	body, err := s.getCached(ctx, repo+"/status?per_page=100")
	if err != nil {
		return nil, err
	}
	var combined struct {
		Statuses []struct {
			Context string `json:"context"`
			State   string `json:"state"`
		} `json:"statuses"`
	}
	if err := json.Unmarshal(body, &combined); err != nil {
		return nil, fmt.Errorf("decoding combined status: %w", err)
	}
	for _, st := range combined.Statuses {
		switch st.State {
		case "success":
			states[st.Context] = checkGreen
		case "failure", "error":
			states[st.Context] = checkFailed
		default:
			states[st.Context] = checkPending
		}
	}
	latest := map[string]int64{}
	for u, pages := repo+"/check-runs?per_page=100", 0; u != "" && pages < 10; pages++ {
		body, next, err := s.getCachedPage(ctx, u)
		if err != nil {
			return nil, err
		}
		var runs struct {
			CheckRuns []struct {
				ID         int64  `json:"id"`
				Name       string `json:"name"`
				Status     string `json:"status"`
				Conclusion string `json:"conclusion"`
			} `json:"check_runs"`
		}
		if err := json.Unmarshal(body, &runs); err != nil {
			return nil, fmt.Errorf("decoding check runs: %w", err)
		}
		for _, r := range runs.CheckRuns {
			if id, seen := latest[r.Name]; seen && id > r.ID {
				continue // an older run of a re-run check
			}
			latest[r.Name] = r.ID
			switch {
			case r.Status != "completed":
				states[r.Name] = checkPending
			case r.Conclusion == "success" || r.Conclusion == "neutral" || r.Conclusion == "skipped":
				states[r.Name] = checkGreen
			default:
				states[r.Name] = checkFailed
			}
		}
		u = next
	}
	return states, nil
}

func (s *Source) getCached(ctx context.Context, u string) ([]byte, error) {
	body, _, err := s.getCachedPage(ctx, u)
	return body, err
}

// getCachedPage is a conditional GET whose answers are kept by URL, so a
// check that has not changed costs no rate limit.
func (s *Source) getCachedPage(ctx context.Context, u string) ([]byte, string, error) {
	s.mu.Lock()
	old := s.checks[u]
	s.mu.Unlock()
	etag := ""
	if old != nil {
		etag = old.etag
	}
	body, tag, next, err := s.c.Get(ctx, u, etag)
	if errors.Is(err, githubapi.ErrNotModified) && old != nil {
		return old.body, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	if tag != "" && next == "" {
		s.mu.Lock()
		if len(s.checks) > 1000 {
			clear(s.checks)
		}
		s.checks[u] = &cached{etag: tag, body: body}
		s.mu.Unlock()
	}
	return body, next, nil
}
