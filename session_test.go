package pkceauth

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-pkce/caddy-pkce/internal/testop"
)

// longTokens is a provider whose access tokens outlive the tests' moves of
// the clock, so no token refresh interferes with the session timers.
var longTokens = testop.Config{Now: testClock, AccessTokenTTL: 48 * time.Hour}

// TestSessionLifetime: a session ends session_lifetime after login however
// much it is used.
func TestSessionLifetime(t *testing.T) {
	op := testop.New(t, longTokens)
	s := startSite(t, op, siteOptions{auth: map[string]any{"session_lifetime": "2h", "idle_timeout": "1h"}})
	b := newBrowser(t, s)
	s.login(t, b, "/")

	// Used every 50 minutes it survives the idle timeout, up to 2h.
	for i := range 2 {
		advanceClock(t, 50*time.Minute)
		r := b.fetch(s.base + "/api")
		expectStatus(t, r, http.StatusOK)
		c := r.SetCookie("pkce_session")
		if c == nil || c.Value == "" {
			t.Fatalf("use %d after 50 minutes did not refresh the idle timer", i+1)
		}
	}
	advanceClock(t, 19*time.Minute) // 1h59m after login
	expectStatus(t, b.fetch(s.base+"/api"), http.StatusOK)
	advanceClock(t, time.Minute+time.Second) // past 2h
	r := b.fetch(s.base + "/api")
	expectStatus(t, r, http.StatusUnauthorized)
	expectNoSetCookie(t, r)
	r = b.navigate(s.base + "/page")
	expectStatus(t, r, http.StatusFound)
	if !strings.HasPrefix(r.Location(), op.Issuer()+testop.AuthorizePath) {
		t.Errorf("expired session: navigation went to %q, want a new login", r.Location())
	}
}

// TestIdleTimeout: an unused session ends after idle_timeout; a used one
// has its timer written back, but not on every request.
func TestIdleTimeout(t *testing.T) {
	op := testop.New(t, longTokens)
	s := startSite(t, op, siteOptions{auth: map[string]any{"idle_timeout": "20m"}})

	b := newBrowser(t, s)
	s.login(t, b, "/")
	// Within touchInterval (a quarter of the timeout, at most 5m) no rewrite.
	advanceClock(t, 4*time.Minute)
	r := b.fetch(s.base + "/api")
	expectStatus(t, r, http.StatusOK)
	expectNoSetCookie(t, r)
	advanceClock(t, 2*time.Minute)
	r = b.fetch(s.base + "/api")
	expectStatus(t, r, http.StatusOK)
	if c := r.SetCookie("pkce_session"); c == nil || c.Value == "" || c.MaxAge <= 0 {
		t.Fatalf("used after 6 minutes: the idle timer was not written back: %v", r.Cookies)
	}
	// 19 minutes after the last use: still valid; 20: gone.
	advanceClock(t, 19*time.Minute)
	expectStatus(t, b.fetch(s.base+"/api"), http.StatusOK)

	b2 := newBrowser(t, s)
	s.login(t, b2, "/")
	advanceClock(t, 20*time.Minute)
	r = b2.fetch(s.base + "/api")
	expectStatus(t, r, http.StatusUnauthorized)
	expectStatus(t, b2.navigate(s.base+"/"), http.StatusFound)

	// idle_timeout -1 disables it.
	s.reload(siteOptions{auth: map[string]any{"idle_timeout": -1}})
	b3 := newBrowser(t, s)
	s.login(t, b3, "/")
	advanceClock(t, 11*time.Hour)
	r = b3.fetch(s.base + "/api")
	expectStatus(t, r, http.StatusOK)
	expectNoSetCookie(t, r)
}

// TestSessionKeyRotation: with session_keys [B, A] sessions sealed with A
// still open and new ones are sealed with B; dropping A ends A's sessions.
func TestSessionKeyRotation(t *testing.T) {
	op := testop.New(t, longTokens)
	s := startSite(t, op, siteOptions{auth: map[string]any{"session_keys": []string{testKeyA}}})
	oldKey := newBrowser(t, s)
	s.login(t, oldKey, "/")

	s.reload(siteOptions{auth: map[string]any{"session_keys": []string{testKeyB, testKeyA}}})
	expectStatus(t, oldKey.fetch(s.base+"/api"), http.StatusOK)
	newKey := newBrowser(t, s)
	s.login(t, newKey, "/")

	s.reload(siteOptions{auth: map[string]any{"session_keys": []string{testKeyB}}})
	expectStatus(t, newKey.fetch(s.base+"/api"), http.StatusOK)
	expectStatus(t, oldKey.fetch(s.base+"/api"), http.StatusUnauthorized)
	expectStatus(t, oldKey.navigate(s.base+"/"), http.StatusFound)

	// A key nobody sealed with opens nothing.
	s.reload(siteOptions{auth: map[string]any{"session_keys": []string{testKeyC}}})
	expectStatus(t, newKey.fetch(s.base+"/api"), http.StatusUnauthorized)
}

// TestGeneratedSessionKey: without session_keys the key is generated once
// into Caddy's storage, so another provision (a reload, a restart, another
// instance sharing the storage) opens the same sessions; another storage
// does not.
func TestGeneratedSessionKey(t *testing.T) {
	op := testop.New(t, longTokens)
	storage := t.TempDir()
	noKeys := map[string]any{"session_keys": nil}
	s := startSite(t, op, siteOptions{auth: noKeys, storage: storage})
	b := newBrowser(t, s)
	s.login(t, b, "/")
	keyFile := filepath.Join(storage, "pkce_auth", "session_key")
	stored, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatalf("generated key not in storage: %v", err)
	}

	s.reload(siteOptions{auth: noKeys, storage: storage})
	expectStatus(t, b.fetch(s.base+"/api"), http.StatusOK)

	s.reload(siteOptions{auth: noKeys, storage: t.TempDir()})
	expectStatus(t, b.fetch(s.base+"/api"), http.StatusUnauthorized)

	s.reload(siteOptions{auth: noKeys, storage: storage})
	expectStatus(t, b.fetch(s.base+"/api"), http.StatusOK)
	if again, _ := os.ReadFile(keyFile); string(again) != string(stored) {
		t.Error("the stored key changed")
	}
}

// TestLargeSessions: many groups split the session into numbered cookies
// that work; a session too large for cookies fails the login with a clear
// page and sets nothing.
func TestLargeSessions(t *testing.T) {
	op := testop.New(t, longTokens)
	s := startSite(t, op, siteOptions{})
	groups := func(n int) []string {
		g := make([]string, n)
		for i := range g {
			g[i] = fmt.Sprintf("group-%04d", i)
		}
		return g
	}
	big := testop.DefaultUser()
	big.Groups = groups(200)
	op.SetUser(big)

	b := newBrowser(t, s)
	r := s.login(t, b, "/")
	var names []string
	for _, c := range r.Cookies {
		if strings.HasPrefix(c.Name, "pkce_session") {
			names = append(names, c.Name)
			if len(c.Name)+len(c.Value) > 4000 {
				t.Errorf("cookie %s is %d bytes, over the browsers' ~4 KiB", c.Name, len(c.Name)+len(c.Value))
			}
			if !c.HttpOnly || c.Path != "/" || c.SameSite != http.SameSiteLaxMode {
				t.Errorf("chunk %+v lacks the session cookie attributes", c)
			}
		}
	}
	if len(names) < 2 || names[0] != "pkce_session" || names[1] != "pkce_session_1" {
		t.Fatalf("session cookies %v, want pkce_session, pkce_session_1, ...", names)
	}
	r = b.fetch(s.base + "/api")
	expectStatus(t, r, http.StatusOK)
	if got := r.Fields()["groups"]; got != strings.Join(big.Groups, ",") {
		t.Errorf("groups placeholder has %d characters, want the 200 groups", len(got))
	}
	if got := r.Fields()["cookie"]; got != "" {
		t.Errorf("chunk cookies reached the upstream: %q", tail(got, 100))
	}

	// A missing chunk is no session.
	bt := newBrowser(t, s)
	for _, n := range names {
		if n != names[len(names)-1] {
			bt.setCookie(s, n, b.cookie(s, n).Value)
		}
	}
	expectStatus(t, bt.fetch(s.base+"/api"), http.StatusUnauthorized)

	// A smaller session afterwards (the big one timed out, its cookies
	// are still in the browser) expires the chunks it no longer needs.
	op.SetUser(testop.DefaultUser())
	advanceClock(t, 61*time.Minute)
	r = s.login(t, b, "/")
	for _, n := range names[1:] {
		if c := r.SetCookie(n); c == nil || c.MaxAge >= 0 {
			t.Errorf("chunk %s not expired by the smaller session", n)
		}
	}
	if got := slices.DeleteFunc(b.cookieNames(s), func(n string) bool { return !strings.HasPrefix(n, "pkce_session") }); !slices.Equal(got, []string{"pkce_session"}) {
		t.Errorf("session cookies after the smaller login: %v", got)
	}
	expectStatus(t, b.fetch(s.base+"/api"), http.StatusOK)

	// Absurdly large: a clear error, no cookie at all.
	huge := testop.DefaultUser()
	huge.Groups = groups(3000)
	op.SetUser(huge)
	b2 := newBrowser(t, s)
	ls := s.startLogin(t, b2, "/")
	r = s.callback(b2, s.authorize(t, b2, ls))
	expectStatus(t, r, http.StatusInternalServerError)
	if !strings.Contains(r.Body, "Session too large") {
		t.Errorf("page %q does not say the session is too large", tail(r.Body, 400))
	}
	for _, c := range r.Cookies {
		if strings.HasPrefix(c.Name, "pkce_session") {
			t.Errorf("a too-large session set cookie %s", c.Name)
		}
	}
	s.expectTxnConsumed(t, b2, r, ls.state)
	s.expectFailureReason(t, "session does not fit")
}

func TestSessionCacheLimit(t *testing.T) {
	c := newSessionCache(8)
	for i := range 100 {
		c.put(fmt.Sprint(i), &activeSession{})
		if n := len(c.entries); n > 8 {
			t.Fatalf("cache holds %d entries, limit 8", n)
		}
	}
	if c.get("99") == nil {
		t.Error("the latest entry is missing")
	}
	c.remove("99")
	if c.get("99") != nil {
		t.Error("removed entry still there")
	}
}
