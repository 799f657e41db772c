package pkceauth

// Cluster tests: several Caddy instances behind a load balancer, sharing
// Redis, a storage folder, or only the session key.
//
// Each instance is a pkce_auth handler provisioned the way Caddy does it
// (Provision then Validate, in its own caddy.Context made from its own
// caddy.Config, so two instances share nothing in-process but the package's
// Redis client pool, which is what two processes with the same config would
// each have). A test load balancer on one httptest origin hands each
// request to the instance the test names, as a round-robin balancer without
// sticky sessions might. This proves the distributed behaviour (shared
// records, cross-instance locks, cache bounds, outages) without building
// and starting Caddy binaries, which would make the suite minutes slower.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-pkce/caddy-pkce/internal/testop"
)

// clusterKey is the session key every instance of a test cluster shares.
const clusterKey = "cluster-test-session-key-0123456789abcdefghijkl"

// clusterSpec is the config the instances of a test cluster share.
type clusterSpec struct {
	store      string        // cookie, redis or caddy_storage
	redisAddr  string        // for redis
	storageDir string        // Caddy storage folder (caddy_storage; every store gets one)
	cacheTTL   time.Duration // session cache_ttl; 0 for the default
	configure  func(*PKCEAuth)
}

// clusterNode is one instance.
type clusterNode struct {
	name string
	p    *PKCEAuth
	logs *observer.ObservedLogs
}

// testCluster is the instances behind one origin, and the provider.
type testCluster struct {
	t     *testing.T
	op    *testop.Provider
	nodes []*clusterNode
	lb    *httptest.Server
}

// newTestOP is a test provider on the module's (test-adjustable) clock.
func newTestOP(t *testing.T, cfg testop.Config) *testop.Provider {
	cfg.Now = func() time.Time { return now() }
	return testop.New(t, cfg)
}

// provisionLock serialises caddy.ProvisionContext, which sets certmagic's
// default storage, a package variable.
var provisionLock sync.Mutex

func newTestCluster(t *testing.T, op *testop.Provider, spec clusterSpec, n int) *testCluster {
	t.Helper()
	if spec.storageDir == "" {
		spec.storageDir = t.TempDir()
	}
	c := &testCluster{t: t, op: op}
	for i := range n {
		c.nodes = append(c.nodes, newClusterNode(t, op, spec, string(rune('A'+i))))
	}
	c.lb = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		node := c.nodes[0]
		for _, nd := range c.nodes {
			if nd.name == r.Header.Get("X-Test-Node") {
				node = nd
			}
		}
		// What Caddy's server provides: a Replacer per request.
		repl := caddy.NewReplacer()
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
		err := node.p.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			fmt.Fprintf(w, "node=%s\nuser=%s\nauthorization=%s\nx-access-token=%s\n", node.name,
				repl.ReplaceAll("{http.auth.user.id}", ""), r.Header.Get("Authorization"), r.Header.Get("X-Access-Token"))
			return nil
		}))
		if err != nil {
			code := http.StatusInternalServerError
			var he caddyhttp.HandlerError
			if errors.As(err, &he) {
				code = he.StatusCode
			}
			http.Error(w, err.Error(), code)
		}
	}))
	t.Cleanup(c.lb.Close)
	return c
}

func newClusterNode(t *testing.T, op *testop.Provider, spec clusterSpec, name string) *clusterNode {
	t.Helper()
	cfg := &caddy.Config{
		StorageRaw: json.RawMessage(fmt.Sprintf(`{"module": "file_system", "root": %q}`, spec.storageDir)),
		Logging: &caddy.Logging{Logs: map[string]*caddy.CustomLog{
			"default": {BaseLog: caddy.BaseLog{Level: "ERROR"}},
		}},
	}
	provisionLock.Lock()
	saved := certmagic.Default.Storage
	ctx, err := caddy.ProvisionContext(cfg)
	certmagic.Default.Storage = saved
	provisionLock.Unlock()
	if err != nil {
		t.Fatalf("caddy context: %v", err)
	}
	p := &PKCEAuth{
		Issuer:      op.Issuer(),
		ClientID:    op.ClientID(),
		SessionKeys: []string{clusterKey},
		Session:     &SessionConfig{Store: spec.store, CacheTTL: caddy.Duration(spec.cacheTTL)},
		// Every response shows the access token the upstream got.
		PassAccessToken: "Authorization",
	}
	if spec.store == storeRedis {
		p.Session.Redis = &RedisConfig{Addresses: []string{spec.redisAddr}}
	}
	if spec.configure != nil {
		spec.configure(p)
	}
	if err := p.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	t.Cleanup(func() { _ = p.Cleanup() })
	if err := p.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	p.logger = zap.New(core)
	return &clusterNode{name: name, p: p, logs: logs}
}

// node returns the instance named name ("A", "B", ...).
func (c *testCluster) node(name string) *clusterNode {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no node %s", name)
	return nil
}

// refreshes counts the refresh_token grants the provider received.
// counted sums a counter of the nodes' metrics (they have one registry
// each): refreshes by result, or "store_unavailable".
func (c *testCluster) counted(what string) float64 {
	var n float64
	for _, nd := range c.nodes {
		if what == "store_unavailable" {
			n += testutil.ToFloat64(nd.p.metrics.storeDown)
		} else {
			n += testutil.ToFloat64(nd.p.metrics.refreshes.WithLabelValues(what))
		}
	}
	return n
}

func (c *testCluster) refreshes() int {
	n := 0
	for _, r := range c.op.TokenRequests() {
		if r.GrantType == "refresh_token" {
			n++
		}
	}
	return n
}

// clusterBrowser is one browser: its cookies for the balanced origin.
type clusterBrowser struct {
	c       *testCluster
	mu      sync.Mutex
	cookies map[string]string
	client  *http.Client
}

func (c *testCluster) browser() *clusterBrowser {
	return &clusterBrowser{c: c, cookies: map[string]string{}, client: &http.Client{
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// clusterReply is a response, read.
type clusterReply struct {
	status int
	header http.Header
	body   string
}

// field reads a line "k=v" of the upstream's body.
func (r *clusterReply) field(k string) string {
	for line := range strings.SplitSeq(r.body, "\n") {
		if key, v, ok := strings.Cut(line, "="); ok && key == k {
			return v
		}
	}
	return ""
}

func (r *clusterReply) String() string {
	return fmt.Sprintf("%d %q", r.status, r.body)
}

// Kinds of request.
const (
	asNavigation = "navigation"
	asXHR        = "xhr"
)

// request sends a request to one node with the browser's cookies (or with
// the cookies given), and keeps the cookies it sets.
func (b *clusterBrowser) request(node, kind, target string, cookies map[string]string) *clusterReply {
	b.c.t.Helper()
	if !strings.HasPrefix(target, "http") {
		target = b.c.lb.URL + target
	}
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		b.c.t.Fatal(err)
	}
	if kind == asNavigation {
		req.Header.Set("Accept", "text/html,application/xhtml+xml")
		req.Header.Set("Sec-Fetch-Mode", "navigate")
	} else {
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Sec-Fetch-Mode", "cors")
	}
	req.Header.Set("X-Test-Node", node)
	b.mu.Lock()
	if cookies == nil {
		cookies = b.cookies
	}
	for k, v := range cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	b.mu.Unlock()
	resp, err := b.client.Do(req)
	if err != nil {
		b.c.t.Fatalf("GET %s on %s: %v", target, node, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if strings.HasPrefix(target, b.c.lb.URL) {
		b.mu.Lock()
		for _, ck := range resp.Cookies() {
			if ck.MaxAge < 0 || ck.Value == "" {
				delete(b.cookies, ck.Name)
			} else {
				b.cookies[ck.Name] = ck.Value
			}
		}
		b.mu.Unlock()
	}
	return &clusterReply{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// get is an XHR to the protected app on node.
func (b *clusterBrowser) get(node string) *clusterReply {
	b.c.t.Helper()
	return b.request(node, asXHR, "/app", nil)
}

// session returns a copy of the browser's session cookies.
func (b *clusterBrowser) session() map[string]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]string{}
	for k, v := range b.cookies {
		if strings.HasPrefix(k, defaultCookieName) {
			out[k] = v
		}
	}
	return out
}

// login signs in through node: navigation, provider, callback.
func (b *clusterBrowser) login(node string) {
	t := b.c.t
	t.Helper()
	start := b.request(node, asNavigation, "/app", nil)
	if start.status != http.StatusFound {
		t.Fatalf("login start on %s: %v", node, start)
	}
	authz := b.request(node, asNavigation, start.header.Get("Location"), nil)
	if authz.status != http.StatusFound {
		t.Fatalf("authorization endpoint: %v", authz)
	}
	back, err := url.Parse(authz.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	done := b.request(node, asNavigation, back.RequestURI(), nil)
	if done.status != http.StatusSeeOther {
		t.Fatalf("callback on %s: %v", node, done)
	}
	if len(b.session()) == 0 {
		t.Fatal("login set no session cookie")
	}
}

// expectUser asserts the request reached the app as alice.
func expectUser(t *testing.T, r *clusterReply, where string) {
	t.Helper()
	if r.status != http.StatusOK || r.field("user") != "alice-sub" {
		t.Fatalf("%s: want 200 for alice-sub, got %v", where, r)
	}
}

func expectStatusCode(t *testing.T, r *clusterReply, want int, where string) {
	t.Helper()
	if r.status != want {
		t.Fatalf("%s: want %d, got %v", where, want, r)
	}
}

// logCount counts log entries with this message.
func (n *clusterNode) logCount(msg string) int {
	return n.logs.FilterMessage(msg).Len()
}

// due advances the clock until the session's access token (5 minutes by
// default at testop) is within the refresh leeway.
func due(t *testing.T) {
	advanceClock(t, testop.DefaultTokenTTL-defaultRefreshLeeway+time.Second)
}

// clusterBasics is what every store must do across instances: a session
// made on A works on B; a refresh made on B is what A then uses; a logout
// on A is refused on B within the cache bound.
func clusterBasics(t *testing.T, c *testCluster, cacheBound time.Duration) {
	b := c.browser()
	b.login("A")
	onA := b.get("A")
	expectUser(t, onA, "session made on A, used on A")
	onB := b.get("B")
	expectUser(t, onB, "session made on A, used on B")
	if onB.field("authorization") != onA.field("authorization") || !strings.HasPrefix(onA.field("authorization"), "Bearer ") {
		t.Fatalf("A and B pass different access tokens: %q vs %q", onA.field("authorization"), onB.field("authorization"))
	}
	oldToken := onA.field("authorization")

	// Refresh on B; A then uses B's result, without refreshing again.
	due(t)
	refreshedOnB := b.get("B")
	expectUser(t, refreshedOnB, "refresh on B")
	if c.refreshes() != 1 || refreshedOnB.field("authorization") == oldToken {
		t.Fatalf("B did not refresh once: %d refresh requests, token changed %v", c.refreshes(), refreshedOnB.field("authorization") != oldToken)
	}
	seenOnA := b.get("A")
	expectUser(t, seenOnA, "after the refresh on B, on A")
	if seenOnA.field("authorization") != refreshedOnB.field("authorization") {
		t.Fatalf("A does not use the refresh made on B: %q vs %q", seenOnA.field("authorization"), refreshedOnB.field("authorization"))
	}
	if c.refreshes() != 1 {
		t.Fatalf("A refreshed again: %d refresh requests in all", c.refreshes())
	}

	// Logout on A: refused on A at once, on B within the cache bound.
	expectUser(t, b.get("B"), "B before the logout")
	cookie := b.session()
	out := b.request("A", asNavigation, defaultLogoutPath, nil)
	expectStatusCode(t, out, http.StatusSeeOther, "logout on A")
	if len(b.session()) != 0 {
		t.Fatalf("logout left session cookies: %v", b.session())
	}
	expectStatusCode(t, b.request("A", asXHR, "/app", cookie), http.StatusUnauthorized, "old cookie on A right after the logout")
	if cacheBound > 0 {
		advanceClock(t, cacheBound)
	}
	expectStatusCode(t, b.request("B", asXHR, "/app", cookie), http.StatusUnauthorized, "old cookie on B once the cache bound passed")
}

func TestClusterRedis(t *testing.T) {
	srv := startTestRedis(t)
	op := newTestOP(t, testop.Config{})
	c := newTestCluster(t, op, clusterSpec{store: storeRedis, redisAddr: srv.addr()}, 2)
	clusterBasics(t, c, defaultStoreCacheTTL)

	t.Run("within the cache bound B may still serve a logged-out session, never after", func(t *testing.T) {
		b := c.browser()
		b.login("A")
		expectUser(t, b.get("B"), "B caches the session")
		cookie := b.session()
		b.request("A", asNavigation, defaultLogoutPath, nil)
		advanceClock(t, defaultStoreCacheTTL-time.Second)
		expectUser(t, b.request("B", asXHR, "/app", cookie), "B within the bound (stale by design)")
		advanceClock(t, time.Second)
		expectStatusCode(t, b.request("B", asXHR, "/app", cookie), http.StatusUnauthorized, "B at the bound")
	})

	t.Run("Redis down: 503, never in; back: the sessions still in Redis work", func(t *testing.T) {
		b := c.browser()
		b.login("A")
		expectUser(t, b.get("B"), "before the outage")
		srv.save() // the restart brings the data back
		srv.kill()
		advanceClock(t, defaultStoreCacheTTL) // past what the caches may serve
		for range 5 {
			for _, node := range []string{"A", "B"} {
				r := b.get(node)
				expectStatusCode(t, r, http.StatusServiceUnavailable, "XHR on "+node+" while Redis is down")
				if !strings.Contains(r.body, "Session store unavailable") || r.header.Get("Retry-After") == "" {
					t.Fatalf("503 without its explanation or Retry-After: %v %v", r, r.header)
				}
			}
		}
		nav := b.request("A", asNavigation, "/app", nil)
		expectStatusCode(t, nav, http.StatusServiceUnavailable, "navigation while Redis is down")
		if !strings.Contains(nav.header.Get("Content-Type"), "text/html") {
			t.Fatalf("navigation got %q, want the HTML page", nav.header.Get("Content-Type"))
		}
		newcomer := c.browser()
		expectStatusCode(t, newcomer.get("A"), http.StatusUnauthorized, "a request without a session needs no store")

		srv.start()
		deadline := time.Now().Add(10 * time.Second)
		for _, node := range []string{"A", "B"} {
			for {
				r := b.get(node)
				if r.status == http.StatusOK {
					expectUser(t, r, node+" after Redis came back")
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s did not recover: %v", node, r)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		for _, n := range c.nodes {
			if down, up := n.logCount("session store unreachable; requests that need it get 503 until it recovers"), n.logCount("session store recovered"); down != 1 || up != 1 {
				t.Errorf("node %s logged the outage %d times and the recovery %d times; want once each", n.name, down, up)
			}
		}
	})
}

func TestClusterCaddyStorage(t *testing.T) {
	op := newTestOP(t, testop.Config{})
	c := newTestCluster(t, op, clusterSpec{store: storeCaddyStorage}, 2)
	clusterBasics(t, c, defaultStoreCacheTTL)
}

// TestClusterCookie: instances that share only the session key share
// sessions, and a refresh made on one is a new cookie the other accepts.
// A logout clears the browser's cookie, but a copy of the old cookie stays
// valid until it expires: cookie sessions cannot be revoked (documented).
func TestClusterCookie(t *testing.T) {
	op := newTestOP(t, testop.Config{})
	c := newTestCluster(t, op, clusterSpec{store: storeCookie}, 2)
	b := c.browser()
	b.login("A")
	onB := b.get("B")
	expectUser(t, onB, "cookie made on A, used on B")

	due(t)
	before := b.session()
	refreshed := b.get("B")
	expectUser(t, refreshed, "refresh on B")
	if c.refreshes() != 1 || refreshed.field("authorization") == onB.field("authorization") {
		t.Fatalf("B did not refresh once (%d refresh requests)", c.refreshes())
	}
	if fmt.Sprint(b.session()) == fmt.Sprint(before) {
		t.Fatal("the refresh on B set no new cookie")
	}
	onA := b.get("A")
	expectUser(t, onA, "refreshed cookie on A")
	if onA.field("authorization") != refreshed.field("authorization") || c.refreshes() != 1 {
		t.Fatalf("A does not use the refreshed cookie: %q, %d refresh requests", onA.field("authorization"), c.refreshes())
	}

	copyOfCookie := b.session()
	expectStatusCode(t, b.request("A", asNavigation, defaultLogoutPath, nil), http.StatusSeeOther, "logout on A")
	if len(b.session()) != 0 {
		t.Fatal("logout did not clear the cookie")
	}
	expectStatusCode(t, b.get("B"), http.StatusUnauthorized, "the browser on B after logout")
	expectUser(t, b.request("B", asXHR, "/app", copyOfCookie), "a copy of the cookie (not revocable in cookie mode)")
}

// TestClusterRefreshThroughLock: B still has the pre-refresh record in its
// cache (long cache_ttl) when its token falls due after A refreshed; B
// takes the lock, reads the record again and uses A's result: one refresh.
func TestClusterRefreshThroughLock(t *testing.T) {
	for _, store := range []string{storeRedis, storeCaddyStorage} {
		t.Run(store, func(t *testing.T) {
			op := newTestOP(t, testop.Config{})
			c, _ := newStoreCluster(t, op, storeCase{store, 2}, func(p *PKCEAuth) {
				p.Session.CacheTTL = caddy.Duration(time.Hour)
			})
			b := c.browser()
			b.login("A")
			expectUser(t, b.get("B"), "B caches the session")
			due(t)
			onA := b.get("A")
			expectUser(t, onA, "refresh on A")
			onB := b.get("B")
			expectUser(t, onB, "B with a stale cache entry")
			if c.refreshes() != 1 || onB.field("authorization") != onA.field("authorization") {
				t.Fatalf("B refreshed again or kept the old token: %d refreshes, same token %v",
					c.refreshes(), onB.field("authorization") == onA.field("authorization"))
			}
		})
	}
}
