package pkceauth

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-pkce/caddy-pkce/internal/testop"
)

// countingBackend counts the calls that reach a backend.
type countingBackend struct {
	backend
	gets, touches atomic.Int64
}

func (c *countingBackend) get(ctx context.Context, id string) (string, int64, error) {
	c.gets.Add(1)
	return c.backend.get(ctx, id)
}

func (c *countingBackend) touch(ctx context.Context, id string, seen int64) error {
	c.touches.Add(1)
	return c.backend.touch(ctx, id, seen)
}

// countCalls wraps a node's backend.
func countCalls(n *clusterNode) *countingBackend {
	cb := &countingBackend{backend: n.p.server.backend}
	n.p.server.backend = cb
	return cb
}

// TestSessionExpiryEveryStore: the idle timeout and the absolute lifetime
// hold in every store, whichever instance the requests reach; the idle
// timer slides with use.
func TestSessionExpiryEveryStore(t *testing.T) {
	for _, sc := range everyStore {
		t.Run(sc.store, func(t *testing.T) {
			op := newTestOP(t, testop.Config{AccessTokenTTL: 24 * time.Hour})
			c, _ := newStoreCluster(t, op, sc, func(p *PKCEAuth) {
				p.IdleTimeout = caddy.Duration(10 * time.Minute)
				p.SessionLifetime = caddy.Duration(time.Hour)
			})
			last := c.nodes[len(c.nodes)-1].name

			b := c.browser()
			b.login("A")
			// Used every 8 minutes, alternating instances: the idle timer
			// (10m) slides, until the absolute lifetime (1h) ends it.
			for i := range 7 {
				advanceClock(t, 8*time.Minute)
				node := c.nodes[i%len(c.nodes)].name
				expectUser(t, b.get(node), "used after 8 more minutes")
			}
			advanceClock(t, 5*time.Minute) // 61 minutes after login
			expectStatusCode(t, b.get("A"), http.StatusUnauthorized, "past the absolute lifetime")
			expectStatusCode(t, b.get(last), http.StatusUnauthorized, "past the absolute lifetime, other instance")

			idle := c.browser()
			idle.login("A")
			advanceClock(t, 9*time.Minute)
			expectUser(t, idle.get(last), "idle 9 minutes")
			advanceClock(t, 10*time.Minute)
			expectStatusCode(t, idle.get("A"), http.StatusUnauthorized, "idle 10 minutes")
			expectStatusCode(t, idle.get(last), http.StatusUnauthorized, "idle 10 minutes, other instance")
		})
	}
}

// TestServerStoreRoundTrips: the hot path of a server-side store does not
// read the store while its cache entry is fresh, and writes the idle timer
// back at most once per touch interval, however many requests there are.
func TestServerStoreRoundTrips(t *testing.T) {
	srv := startTestRedis(t)
	op := newTestOP(t, testop.Config{AccessTokenTTL: 24 * time.Hour})
	c := newTestCluster(t, op, clusterSpec{store: storeRedis, redisAddr: srv.addr(), configure: func(p *PKCEAuth) {
		p.IdleTimeout = caddy.Duration(10 * time.Minute)
	}}, 1)
	calls := countCalls(c.nodes[0])
	b := c.browser()
	b.login("A")

	for range 50 {
		expectUser(t, b.get("A"), "within the cache TTL")
	}
	if n := calls.gets.Load(); n != 0 {
		t.Fatalf("%d store reads within the cache TTL of a session made here, want 0", n)
	}
	advanceClock(t, defaultStoreCacheTTL)
	for range 50 {
		expectUser(t, b.get("A"), "after the cache TTL")
	}
	if n := calls.gets.Load(); n != 1 {
		t.Fatalf("%d store reads after the cache TTL, want 1", n)
	}
	if n := calls.touches.Load(); n != 0 {
		t.Fatalf("%d idle timer writes before the touch interval", n)
	}

	advanceClock(t, time.Duration(touchInterval(600))*time.Second)
	for range 50 {
		expectUser(t, b.get("A"), "touch due")
	}
	if n := calls.touches.Load(); n != 1 {
		t.Fatalf("%d idle timer writes for 50 requests, want 1 per interval", n)
	}
	seen := srv.client().HGet(context.Background(), "pkce:session:"+firstSessionID(t, c.nodes[0]), "ls").Val()
	if seen == "" {
		t.Fatal("the idle timer was not written to Redis")
	}
}

// firstSessionID returns the id of a session cached on the node.
func firstSessionID(t *testing.T, n *clusterNode) string {
	t.Helper()
	cache := n.p.server.cache
	cache.mu.RLock()
	defer cache.mu.RUnlock()
	for _, a := range cache.entries {
		if a.session != nil {
			return a.id
		}
	}
	t.Fatal("no session cached")
	return ""
}

// TestServerStoreCookie: the browser holds only a sealed id; a cookie-mode
// cookie, a forged id, or a cookie sealed for another cookie name is no
// session (and costs no store read beyond the first).
func TestServerStoreCookie(t *testing.T) {
	op := newTestOP(t, testop.Config{})
	c := newTestCluster(t, op, clusterSpec{store: storeCaddyStorage}, 1)
	b := c.browser()
	b.login("A")
	p := c.nodes[0].p
	sealed := b.session()[defaultCookieName]
	plain, err := p.sessionKeys.Open(defaultCookieName, sealed)
	if err != nil || !validSessionID(plain) {
		t.Fatalf("cookie does not seal a session id: %q, %v", plain, err)
	}
	if len(sealed) > 200 {
		t.Fatalf("cookie of %d bytes: tokens are in the cookie", len(sealed))
	}
	for name, value := range map[string]string{
		"forged id":           p.sessionKeys.Seal(defaultCookieName, []byte("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")),
		"cookie-mode session": p.sessionKeys.Seal(defaultCookieName, []byte(`{"uid":"alice-sub","sub":"alice-sub","exp":9999999999,"ls":9999999999}`)),
		"other cookie name":   p.sessionKeys.Seal("other", plain),
		"garbage":             "not-sealed",
	} {
		r := b.request("A", asXHR, "/app", map[string]string{defaultCookieName: value})
		expectStatusCode(t, r, http.StatusUnauthorized, name)
	}
}

// TestServerStoreRecordBinding: a handler for another provider or client
// that shares the store and the keys cannot use the records.
func TestServerStoreRecordBinding(t *testing.T) {
	srv := startTestRedis(t)
	op := newTestOP(t, testop.Config{})
	c := newTestCluster(t, op, clusterSpec{store: storeRedis, redisAddr: srv.addr()}, 1)
	b := c.browser()
	b.login("A")
	expectUser(t, b.get("A"), "own handler")
	other := newTestCluster(t, op, clusterSpec{store: storeRedis, redisAddr: srv.addr(), configure: func(p *PKCEAuth) {
		p.ClientID = "another-client"
	}}, 1)
	r := other.browser().request("A", asXHR, "/app", b.session())
	expectStatusCode(t, r, http.StatusUnauthorized, "same store and keys, another client_id")
}
