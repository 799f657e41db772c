package pkceauth

// Benchmarks of the hot path and of a complete login; `make bench` runs them
// with -benchmem, docs/benchmarks.md explains the method and keeps the
// latest figures. Every benchmark uses a session obtained by a real login
// against internal/testop, so the cookie has the size and content of a real
// one (ID token included).

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"golang.org/x/oauth2"

	"github.com/caddy-pkce/caddy-pkce/internal/testop"
)

// benchSessionKey is the session_keys value of the benchmark handlers.
const benchSessionKey = "bench-session-key-0123456789abcdefghijklmnopqrstuvwxyz"

// benchSite is a provisioned pkce_auth handler, the provider it trusts, and
// a browser that logs in through both.
type benchSite struct {
	p       *PKCEAuth
	op      *testop.Provider
	browser *http.Client // does not follow redirects
	next    *benchNext
}

// benchNext is the handler behind pkce_auth; it counts what reaches it, so
// a benchmark cannot silently measure a redirect to the login instead.
type benchNext struct{ served int }

func (n *benchNext) ServeHTTP(http.ResponseWriter, *http.Request) error {
	n.served++
	return nil
}

// newBenchSite provisions a handler the way Caddy does (Provision, then
// Validate, in a provisioned caddy.Context that logs only errors), trusting a
// fresh testop provider. configure may change the config before Provision.
func newBenchSite(b *testing.B, configure func(*PKCEAuth)) *benchSite {
	b.Helper()
	op := testop.New(b, testop.Config{})
	cfg := &caddy.Config{Logging: &caddy.Logging{Logs: map[string]*caddy.CustomLog{
		"default": {BaseLog: caddy.BaseLog{Level: "ERROR"}},
	}}}
	ctx, err := caddy.ProvisionContext(cfg)
	if err != nil {
		b.Fatalf("caddy context: %v", err)
	}
	p := &PKCEAuth{Issuer: op.Issuer(), ClientID: op.ClientID(), SessionKeys: []string{benchSessionKey}}
	if configure != nil {
		configure(p)
	}
	if err := p.Provision(ctx); err != nil {
		b.Fatalf("Provision: %v", err)
	}
	b.Cleanup(func() { _ = p.Cleanup() })
	if err := p.Validate(); err != nil {
		b.Fatalf("Validate: %v", err)
	}
	return &benchSite{
		p:  p,
		op: op,
		browser: &http.Client{
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		next: &benchNext{},
	}
}

// benchOrigin is the site's origin in the benchmarks' requests. The provider
// accepts any redirect URI and never contacts it.
const benchOrigin = "http://site.test"

// login runs one complete login as a browser would: a navigation without a
// session, the provider's authorization endpoint (which approves at once),
// then the callback. It returns the session cookie ("name=value").
func (s *benchSite) login(tb testing.TB) string {
	tb.Helper()
	cookie, err := s.tryLogin(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return cookie
}

// tryLogin is login, reporting failures as errors so a benchmark loop can
// stop cleanly; plugin, when not nil, is called around each of the two
// ServeHTTP calls of the plugin (start, after).
func (s *benchSite) tryLogin(plugin func(start bool)) (string, error) {
	around := func(f func()) {
		if plugin != nil {
			plugin(true)
			defer plugin(false)
		}
		f()
	}

	nav := httptest.NewRequest(http.MethodGet, benchOrigin+"/private/page", nil)
	nav.Header.Set("Accept", "text/html,application/xhtml+xml")
	start := httptest.NewRecorder()
	var err error
	around(func() { err = s.p.ServeHTTP(start, nav, s.next) })
	if err != nil || start.Code != http.StatusFound {
		return "", &benchError{"login start", start.Code, err}
	}

	resp, err := s.browser.Get(start.Header().Get("Location"))
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return "", &benchError{"authorization endpoint", resp.StatusCode, nil}
	}
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return "", err
	}

	cb := httptest.NewRequest(http.MethodGet, benchOrigin+back.RequestURI(), nil)
	for _, c := range start.Result().Cookies() {
		cb.AddCookie(c)
	}
	done := httptest.NewRecorder()
	around(func() { err = s.p.ServeHTTP(done, cb, s.next) })
	if err != nil || done.Code != http.StatusSeeOther {
		return "", &benchError{"callback", done.Code, err}
	}
	for _, c := range done.Result().Cookies() {
		if c.Name == s.p.jars[0].name && c.Value != "" {
			return c.Name + "=" + c.Value, nil
		}
	}
	return "", &benchError{"callback set no session cookie", done.Code, nil}
}

type benchError struct {
	step   string
	status int
	err    error
}

func (e *benchError) Error() string {
	msg := e.step + ": status " + http.StatusText(e.status)
	if e.err != nil {
		msg += ": " + e.err.Error()
	}
	return msg
}

// authenticatedRequest is a request as Caddy's server hands it to the
// handler chain: a fresh Replacer in its context (Caddy makes one per
// request) and the session cookie beside another site cookie.
func authenticatedRequest(cookie string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, benchOrigin+"/private/page", nil)
	r.Header.Set("Accept", "text/html,application/xhtml+xml")
	r.Header.Set("Cookie", cookie)
	// The request variables and the Replacer as caddyhttp.PrepareRequest
	// sets them up.
	*r = *r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{
		caddyhttp.TrustedProxyVarKey: false,
		caddyhttp.ClientIPVarKey:     "192.0.2.1",
	}))
	caddyhttp.NewTestReplacer(r)
	return r
}

// benchWriter is a ResponseWriter that keeps nothing.
type benchWriter struct{ h http.Header }

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *benchWriter) WriteHeader(int)             {}

// serveBatched runs ServeHTTP b.N times on fresh requests. The requests
// (and the per-request Replacer Caddy would make) are built in batches with
// the timer stopped, so time and allocations are the handler's alone.
func (s *benchSite) serveBatched(b *testing.B, newRequest func() *http.Request) {
	b.Helper()
	const batch = 256
	reqs := make([]*http.Request, batch)
	w := &benchWriter{h: http.Header{}}
	s.next.served = 0
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		b.StopTimer()
		for i := range n {
			reqs[i] = newRequest()
		}
		clear(w.h)
		b.StartTimer()
		for i := range n {
			if err := s.p.ServeHTTP(w, reqs[i], s.next); err != nil {
				b.Fatal(err)
			}
		}
		done += n
	}
	b.StopTimer()
	if s.next.served != b.N {
		b.Fatalf("%d of %d requests reached the next handler: the session was not accepted", s.next.served, b.N)
	}
	if len(w.h["Set-Cookie"]) > 0 {
		b.Fatalf("the hot path wrote a cookie: %q", w.h["Set-Cookie"])
	}
}

// BenchmarkSessionOpen is the first request with a session cookie on an
// instance in cookie mode (or after the decoded-session cache dropped it):
// decrypt the sealed cookie, parse its JSON, precompute placeholders.
func BenchmarkSessionOpen(b *testing.B) {
	s := newBenchSite(b, nil)
	cookie := s.login(b)
	r := authenticatedRequest(cookie)
	jar := s.p.cookies(r)
	sealed := jar.readSession(r)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		s.p.sessions.remove(sealed)
		if a, _, err := s.p.store.load(r, jar); a == nil || err != nil {
			b.Fatalf("valid session cookie not accepted (%v)", err)
		}
	}
	b.ReportMetric(float64(len(sealed)), "cookie-bytes")
}

// BenchmarkSessionCheck is the per-request session check in cookie mode:
// find the cookie, look the decoded session up, check expiry and idle time.
func BenchmarkSessionCheck(b *testing.B) {
	s := newBenchSite(b, nil)
	cookie := s.login(b)
	r := authenticatedRequest(cookie)
	jar := s.p.cookies(r)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if a, _, err := s.p.store.load(r, jar); a == nil || err != nil {
			b.Fatalf("valid session cookie not accepted (%v)", err)
		}
	}
}

// BenchmarkServeHTTPCookie is a whole authenticated request in cookie mode:
// routing, session check, placeholders set on Caddy's Replacer, the module's
// cookie stripped from the request, the next handler called.
func BenchmarkServeHTTPCookie(b *testing.B) {
	for _, tc := range []struct {
		name      string
		configure func(*PKCEAuth)
		cookies   string // other cookies the browser sends
	}{
		{"plain", nil, ""},
		{"other-cookies", nil, "theme=dark; _ga=GA1.2.3.4"},
		{"headers", func(p *PKCEAuth) {
			p.Headers = map[string]string{"X-Forwarded-User": "preferred_username", "X-Forwarded-Email": "email", "X-Forwarded-Groups": "groups"}
		}, ""},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := newBenchSite(b, tc.configure)
			cookie := s.login(b)
			if tc.cookies != "" {
				cookie = tc.cookies + "; " + cookie
			}
			s.serveBatched(b, func() *http.Request { return authenticatedRequest(cookie) })
		})
	}
}

// BenchmarkServeHTTPRedis is a whole authenticated request with the
// sessions in Redis (a real redis-server on loopback): "warm" finds the
// session in the instance's cache (cache_ttl 1m, longer than the run);
// "cold" reads Redis on every request (cache_ttl negative): open the sealed
// session id, GET the record, decrypt and parse it.
func BenchmarkServeHTTPRedis(b *testing.B) {
	redis := startTestRedis(b)
	for _, tc := range []struct {
		name     string
		cacheTTL time.Duration
	}{
		{"warm", time.Minute},
		{"cold", -1},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := newBenchSite(b, func(p *PKCEAuth) {
				p.Session = &SessionConfig{
					Store:    storeRedis,
					Redis:    &RedisConfig{Addresses: []string{redis.addr()}},
					CacheTTL: caddy.Duration(tc.cacheTTL),
				}
			})
			cookie := s.login(b)
			s.serveBatched(b, func() *http.Request { return authenticatedRequest(cookie) })
		})
	}
}

// BenchmarkLogin drives complete logins (navigation → authorization
// endpoint → callback) against internal/testop, one after the other. It
// reports:
//
//	logins/s          completed logins per second, wall clock, sequential
//	plugin-cpu-µs/op  CPU time of the plugin's two ServeHTTP calls,
//	                  measured on their own (locked) OS thread: building the
//	                  login, the PKCE exchange request and reading its answer,
//	                  ID token verification, sealing the session
//	process-cpu-µs/op CPU time of the whole test process per login: plugin,
//	                  provider, both ends of the HTTP connections, GC
//
// BenchmarkLoginProvider measures the provider's share alone.
func BenchmarkLogin(b *testing.B) {
	s := newBenchSite(b, nil)
	s.login(b) // discovery and the JWKS fetch happen once, not per login

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var plugin time.Duration
	var mark time.Duration
	measure := func(start bool) {
		if start {
			mark = threadCPU()
		} else {
			plugin += threadCPU() - mark
		}
	}
	cpu0 := processCPU()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := s.tryLogin(measure); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportLoginMetrics(b, plugin, processCPU()-cpu0)
}

// BenchmarkLoginProvider makes the two requests a login costs the provider
// (authorization with a PKCE challenge, then the code exchange with the
// verifier) with the same clients the login uses, without the plugin. Its
// process-cpu-µs/op is the provider's CPU per login, the client ends of the
// two HTTP connections included.
func BenchmarkLoginProvider(b *testing.B) {
	s := newBenchSite(b, nil)
	cfg := oauth2.Config{
		ClientID:    s.op.ClientID(),
		RedirectURL: benchOrigin + defaultCallbackPath,
		Scopes:      defaultScopes,
		Endpoint: oauth2.Endpoint{
			AuthURL:   s.op.Issuer() + testop.AuthorizePath,
			TokenURL:  s.op.Issuer() + testop.TokenPath,
			AuthStyle: oauth2.AuthStyleInParams,
		},
	}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, s.p.provider.client)
	cpu0 := processCPU()
	b.ResetTimer()
	for range b.N {
		verifier := oauth2.GenerateVerifier()
		state := randomToken()
		resp, err := s.browser.Get(cfg.AuthCodeURL(state,
			oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", randomToken())))
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		back, err := url.Parse(resp.Header.Get("Location"))
		if err != nil || back.Query().Get("state") != state {
			b.Fatalf("authorization: status %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		tok, err := cfg.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			b.Fatal(err)
		}
		if raw, _ := tok.Extra("id_token").(string); strings.Count(raw, ".") != 2 {
			b.Fatal("token response without an ID token")
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu0)/float64(time.Microsecond)/float64(b.N), "process-cpu-µs/op")
}

func reportLoginMetrics(b *testing.B, plugin, process time.Duration) {
	n := float64(b.N)
	b.ReportMetric(n/b.Elapsed().Seconds(), "logins/s")
	b.ReportMetric(float64(plugin)/float64(time.Microsecond)/n, "plugin-cpu-µs/op")
	b.ReportMetric(float64(process)/float64(time.Microsecond)/n, "process-cpu-µs/op")
}

// Interface guards
var _ caddyhttp.Handler = (*benchNext)(nil)
