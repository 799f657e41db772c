package pkceauth

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-pkce/caddy-pkce/internal/testop"
)

// storeCase is one session store to run a test against, with how many
// instances share it (cookie mode: instances cannot coordinate, so one).
type storeCase struct {
	store string
	nodes int
}

var everyStore = []storeCase{{storeCookie, 1}, {storeRedis, 2}, {storeCaddyStorage, 2}}

// newStoreCluster starts what the store needs and a cluster on it.
func newStoreCluster(t *testing.T, op *testop.Provider, sc storeCase, configure func(*PKCEAuth)) (*testCluster, *testRedis) {
	t.Helper()
	spec := clusterSpec{store: sc.store, configure: configure}
	var srv *testRedis
	if sc.store == storeRedis {
		srv = startTestRedis(t)
		spec.redisAddr = srv.addr()
	}
	return newTestCluster(t, op, spec, sc.nodes), srv
}

// TestRefreshRace: 50 parallel requests of one session whose access token
// is about to expire, spread over every instance, against a provider that
// rotates refresh tokens and revokes the grant on reuse. Exactly one
// refresh may reach the provider, and no request may be logged out.
func TestRefreshRace(t *testing.T) {
	for _, sc := range everyStore {
		t.Run(sc.store, func(t *testing.T) {
			op := newTestOP(t, testop.Config{})
			c, _ := newStoreCluster(t, op, sc, nil)
			b := c.browser()
			b.login("A")
			old := b.get("A").field("authorization")
			oldCookie := b.session()
			due(t)

			const parallel = 50
			replies := make([]*clusterReply, parallel)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range parallel {
				wg.Go(func() {
					<-start
					replies[i] = b.request(c.nodes[i%len(c.nodes)].name, asXHR, "/app", oldCookie)
				})
			}
			close(start)
			wg.Wait()

			var fresh string
			for i, r := range replies {
				expectUser(t, r, "parallel request")
				tok := r.field("authorization")
				if tok == old {
					t.Fatalf("request %d went upstream with the expiring token", i)
				}
				if fresh == "" {
					fresh = tok
				} else if tok != fresh {
					t.Fatalf("requests got different refreshed tokens: the session was refreshed more than once")
				}
			}
			if n := c.refreshes(); n != 1 {
				t.Fatalf("%d refresh requests reached the provider, want exactly 1", n)
			}
			if n := c.counted("succeeded"); n != 1 {
				t.Fatalf("refreshes_total{result=succeeded} = %v, want 1", n)
			}

			// Late requests still carrying the old state get the new
			// session, not a second refresh (which would be reuse).
			for _, n := range c.nodes {
				late := b.request(n.name, asXHR, "/app", oldCookie)
				expectUser(t, late, "late request with the old state on "+n.name)
				if late.field("authorization") != fresh {
					t.Fatalf("late request on %s got another token", n.name)
				}
			}
			if n := c.refreshes(); n != 1 {
				t.Fatalf("late requests caused more refreshes: %d", n)
			}

			// The grant is still alive: no reuse was detected, so the next
			// refresh works too.
			due(t)
			next := b.get("A")
			expectUser(t, next, "second refresh")
			if c.refreshes() != 2 || next.field("authorization") == fresh {
				t.Fatalf("second refresh: %d refreshes, token changed %v", c.refreshes(), next.field("authorization") != fresh)
			}
		})
	}
}

// TestRefreshFailure: a refused refresh ends the session (navigation → new
// login, XHR → 401); an unreachable provider keeps it while the token is
// valid, then by default signs the request out without ending the session,
// or keeps it to the absolute expiry with keep_session_when_idp_down.
func TestRefreshFailure(t *testing.T) {
	for _, sc := range []storeCase{{storeCookie, 1}, {storeRedis, 1}} {
		t.Run(sc.store, func(t *testing.T) {
			t.Run("refused", func(t *testing.T) {
				op := newTestOP(t, testop.Config{})
				c, srv := newStoreCluster(t, op, sc, nil)
				b := c.browser()
				b.login("A")
				cookie := b.session()
				op.Misbehave(testop.Misbehaviour{TokenError: "invalid_grant"})
				due(t)
				r := b.get("A")
				expectStatusCode(t, r, http.StatusUnauthorized, "XHR after a refused refresh")
				if len(b.session()) != 0 {
					t.Fatal("the session cookie was not cleared")
				}
				nav := b.request("A", asNavigation, "/app", cookie)
				if nav.status != http.StatusFound || !strings.HasPrefix(nav.header.Get("Location"), op.Issuer()+testop.AuthorizePath) {
					t.Fatalf("navigation after a refused refresh: %v, want a new login", nav)
				}
				if srv != nil {
					if keys := srv.client().Keys(context.Background(), "pkce:session:*").Val(); len(keys) != 0 {
						t.Fatalf("refused session still in Redis: %v", keys)
					}
				}
				if c.refreshes() != 1 {
					t.Fatalf("%d refresh attempts, want 1", c.refreshes())
				}
				if n := c.counted("rejected"); n != 1 {
					t.Fatalf("refreshes_total{result=rejected} = %v, want 1", n)
				}
			})
			t.Run("provider down, token still valid", func(t *testing.T) {
				op := newTestOP(t, testop.Config{})
				c, _ := newStoreCluster(t, op, sc, nil)
				b := c.browser()
				b.login("A")
				old := b.get("A").field("authorization")
				op.Misbehave(testop.Misbehaviour{TokenStatus500: true})
				due(t)
				r := b.get("A")
				expectUser(t, r, "provider down, token valid")
				if r.field("authorization") != old {
					t.Fatal("the upstream did not get the still-valid token")
				}
				if n := c.counted("unavailable"); n != 1 {
					t.Fatalf("refreshes_total{result=unavailable} = %v, want 1", n)
				}
				// Recovery: the next try after the retry delay refreshes.
				op.Misbehave(testop.Misbehaviour{})
				advanceClock(t, refreshRetryAfter)
				r = b.get("A")
				expectUser(t, r, "after the provider recovered")
				if r.field("authorization") == old {
					t.Fatal("no refresh after the provider recovered")
				}
			})
			t.Run("provider down, token expired", func(t *testing.T) {
				op := newTestOP(t, testop.Config{})
				c, _ := newStoreCluster(t, op, sc, nil)
				b := c.browser()
				b.login("A")
				op.Misbehave(testop.Misbehaviour{TokenStatus500: true})
				advanceClock(t, testop.DefaultTokenTTL+time.Second)
				expectStatusCode(t, b.get("A"), http.StatusUnauthorized, "XHR with an expired token, provider down")
				if len(b.session()) == 0 {
					t.Fatal("an unreachable provider ended the session")
				}
				op.Misbehave(testop.Misbehaviour{})
				advanceClock(t, refreshRetryAfter)
				expectUser(t, b.get("A"), "same session once the provider is back")
			})
			t.Run("keep_session_when_idp_down", func(t *testing.T) {
				op := newTestOP(t, testop.Config{})
				c, _ := newStoreCluster(t, op, sc, func(p *PKCEAuth) { p.KeepSessionWhenIdPDown = true })
				b := c.browser()
				b.login("A")
				op.Misbehave(testop.Misbehaviour{TokenStatus500: true})
				advanceClock(t, testop.DefaultTokenTTL+time.Second)
				expectUser(t, b.get("A"), "expired token kept while the provider is down")
				advanceClock(t, defaultSessionLifetime)
				expectStatusCode(t, b.get("A"), http.StatusUnauthorized, "past the absolute expiry")
			})
		})
	}
}

// TestRefreshSettings: refresh off, refresh_on id_token, the leeway cap,
// and which tokens travel in a cookie.
func TestRefreshSettings(t *testing.T) {
	t.Run("refresh off keeps the login's tokens", func(t *testing.T) {
		op := newTestOP(t, testop.Config{})
		off := false
		c := newTestCluster(t, op, clusterSpec{store: storeCookie, configure: func(p *PKCEAuth) {
			p.Refresh = &off
			p.PassAccessToken = ""
		}}, 1)
		b := c.browser()
		b.login("A")
		advanceClock(t, testop.DefaultTokenTTL+time.Second)
		expectUser(t, b.get("A"), "past the access token's expiry")
		if c.refreshes() != 0 {
			t.Fatalf("%d refreshes with refresh off", c.refreshes())
		}
		s := openCookieSession(t, c.nodes[0].p, b.session())
		if s.RefreshToken != "" || s.AccessToken != "" || s.TokenTime != 0 {
			t.Fatalf("the cookie carries tokens nobody uses: rt %v at %v", s.RefreshToken != "", s.AccessToken != "")
		}
	})
	t.Run("cookie carries the refresh token but not the access token unless passed", func(t *testing.T) {
		op := newTestOP(t, testop.Config{})
		c := newTestCluster(t, op, clusterSpec{store: storeCookie, configure: func(p *PKCEAuth) { p.PassAccessToken = "" }}, 1)
		b := c.browser()
		b.login("A")
		s := openCookieSession(t, c.nodes[0].p, b.session())
		if s.RefreshToken == "" || s.AccessToken != "" || s.AccessExpiry == 0 {
			t.Fatalf("cookie: refresh token %v, access token %v, expiry %d", s.RefreshToken != "", s.AccessToken != "", s.AccessExpiry)
		}
		due(t)
		expectUser(t, b.get("A"), "refresh without passing the token")
		if c.refreshes() != 1 {
			t.Fatalf("%d refreshes", c.refreshes())
		}
	})
	t.Run("refresh_on id_token", func(t *testing.T) {
		op := newTestOP(t, testop.Config{IDTokenTTL: 4 * time.Minute, AccessTokenTTL: time.Hour})
		c := newTestCluster(t, op, clusterSpec{store: storeCookie, configure: func(p *PKCEAuth) { p.RefreshOn = refreshOnIDToken }}, 1)
		b := c.browser()
		b.login("A")
		advanceClock(t, 3*time.Minute+time.Second)
		expectUser(t, b.get("A"), "ID token within the leeway")
		if c.refreshes() != 1 {
			t.Fatalf("%d refreshes, want 1 driven by the ID token", c.refreshes())
		}
	})
	t.Run("leeway capped at half a short token's lifetime", func(t *testing.T) {
		op := newTestOP(t, testop.Config{AccessTokenTTL: 40 * time.Second})
		c := newTestCluster(t, op, clusterSpec{store: storeCookie}, 1)
		b := c.browser()
		b.login("A")
		for range 3 {
			expectUser(t, b.get("A"), "fresh short token")
		}
		if c.refreshes() != 0 {
			t.Fatalf("a token shorter than the leeway is refreshed on every request: %d", c.refreshes())
		}
		advanceClock(t, 21*time.Second)
		expectUser(t, b.get("A"), "past half its lifetime")
		if c.refreshes() != 1 {
			t.Fatalf("%d refreshes past half the lifetime", c.refreshes())
		}
	})
}

// TestPassAccessToken: the token goes upstream in the configured header;
// whatever the client sent under that name never does.
func TestPassAccessToken(t *testing.T) {
	op := newTestOP(t, testop.Config{})
	c := newTestCluster(t, op, clusterSpec{store: storeCookie, configure: func(p *PKCEAuth) { p.PassAccessToken = "X-Access-Token" }}, 1)
	b := c.browser()
	b.login("A")
	r := b.get("A")
	expectUser(t, r, "with pass_access_token X-Access-Token")
	if tok := r.field("x-access-token"); strings.Count(tok, ".") != 2 || strings.HasPrefix(tok, "Bearer") {
		t.Fatalf("X-Access-Token %q, want the bare JWT", tok)
	}
	c2 := newTestCluster(t, op, clusterSpec{store: storeCookie}, 1)
	b2 := c2.browser()
	b2.login("A")
	req, _ := http.NewRequest(http.MethodGet, c2.lb.URL+"/app", nil)
	req.Header.Set("Authorization", "Bearer forged-by-client")
	req.Header.Set("Accept", "application/json")
	for k, v := range b2.session() {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	got := (&clusterReply{body: string(body)}).field("authorization")
	if !strings.HasPrefix(got, "Bearer ") || strings.Contains(got, "forged") {
		t.Fatalf("upstream Authorization %q: the client's header was not replaced", got)
	}
}

// openCookieSession decodes the browser's session cookie.
func openCookieSession(t *testing.T, p *PKCEAuth, cookies map[string]string) *session {
	t.Helper()
	sealed := cookies[defaultCookieName]
	plain, err := p.sessionKeys.Open(defaultCookieName, sealed)
	if err != nil {
		t.Fatalf("session cookie does not open: %v", err)
	}
	var s session
	if err := json.Unmarshal(plain, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

func TestJWTExpiry(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want int64
	}{
		{"x.eyJleHAiOjE3MDAwMDAwMDB9.y", 1700000000},
		{"x.eyJleHAiOjEuNWUxMH0.y", 15000000000},
		{"x.eyJzdWIiOiJhIn0.y", 0},
		{"not-a-jwt", 0},
		{"x.!!!.y", 0},
	} {
		if got := jwtExpiry(tc.raw); got != tc.want {
			t.Errorf("jwtExpiry(%q) = %d, want %d", tc.raw, got, tc.want)
		}
	}
}

// TestRefreshStoreDown: a refresh that needs a store that is down does not
// take down a request whose token is still valid; once the token has
// expired the request gets 503, never a pass.
func TestRefreshStoreDown(t *testing.T) {
	srv := startTestRedis(t)
	op := newTestOP(t, testop.Config{})
	c := newTestCluster(t, op, clusterSpec{store: storeRedis, redisAddr: srv.addr(), configure: func(p *PKCEAuth) {
		p.Session.CacheTTL = caddy.Duration(time.Hour) // the session stays in the cache
	}}, 1)
	b := c.browser()
	b.login("A")
	old := b.get("A").field("authorization")
	srv.kill()
	due(t)
	r := b.get("A")
	expectUser(t, r, "refresh due, store down, token valid")
	if r.field("authorization") != old || c.refreshes() != 0 {
		t.Fatalf("token changed or refreshed without the store (%d refreshes)", c.refreshes())
	}
	if n := c.counted("store_unavailable"); n != 0 {
		t.Fatalf("store_unavailable_total = %v before any 503", n)
	}
	advanceClock(t, defaultRefreshLeeway)
	expectStatusCode(t, b.get("A"), http.StatusServiceUnavailable, "token expired, store down")
	if n := c.counted("store_unavailable"); n != 1 {
		t.Fatalf("store_unavailable_total = %v after one 503, want 1", n)
	}
}
