package pkceguard

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/oauth2"
)

// testCookieKey seals the pending-request cookies in handler tests, which
// have no Caddy storage for a generated key.
const testCookieKey = "test-cookie-key-0123456789abcdef-0123456789"

// flowsConfig is the configuration runFlows expects, in JSON.
const flowsConfig = `{
	"exempt_clients": ["exempt-app"],
	"redirect_uris": {
		"public-app": ["https://app.example/cb"],
		"conf-app": ["https://conf.example/cb"],
		"native-app": ["com.example.app:/oauth2redirect"]
	},
	"cookie_keys": ["` + testCookieKey + `"]
}`

// newGuard provisions a guard from JSON the way Caddy does, and cleans it
// up with the test.
func newGuard(t *testing.T, config string) (*Guard, caddy.Context) {
	t.Helper()
	g := new(Guard)
	if err := json.Unmarshal([]byte(config), g); err != nil {
		t.Fatalf("config: %v", err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := g.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if err := g.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	g.logger = zaptest.NewLogger(t)
	return g, ctx
}

// serveGuard runs g in front of a new legacy server on a test server.
func serveGuard(t *testing.T, g *Guard) *env {
	t.Helper()
	legacy := newLegacyServer()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		legacy.ServeHTTP(w, r)
		return nil
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.ServeHTTP(w, r, next); err != nil {
			var he caddyhttp.HandlerError
			if errors.As(err, &he) {
				w.WriteHeader(he.StatusCode)
				return
			}
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(srv.Close)
	return &env{base: srv.URL, legacy: legacy}
}

// TestFlowsHandler runs the flows against the handler alone.
func TestFlowsHandler(t *testing.T) {
	g, _ := newGuard(t, flowsConfig)
	runFlows(t, serveGuard(t, g))
}

// TestRefusalsCounted checks the metric and the log line of a refusal, and
// that neither holds the challenge, the code or the verifier.
func TestRefusalsCounted(t *testing.T) {
	g, _ := newGuard(t, flowsConfig)
	core, logs := observer.New(zap.InfoLevel)
	g.logger = zap.New(core)
	e := serveGuard(t, g)
	b := newBrowser(t, e)

	q, v := s256Params(publicApp, publicAppCB, "st-m")
	q.Set("code_challenge_method", "plain")
	b.authorize(q)
	q, _ = s256Params(publicApp, publicAppCB, "st-m2")
	code := codeOf(b.codeFlow(q))
	e.token(t, codeForm(publicApp, publicAppCB, code, v))

	for reason, want := range map[string]float64{reasonMethodNotAllowed: 1, reasonVerifierMismatch: 1, reasonMissingChallenge: 0} {
		if got := counterValue(t, g.metrics.refusals, reason); got != want {
			t.Errorf("refusals{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	refusals := logs.FilterMessage("request refused").All()
	if len(refusals) != 2 {
		t.Fatalf("got %d refusal log lines, want 2", len(refusals))
	}
	if refusals[0].ContextMap()["reason"] != reasonMethodNotAllowed || refusals[1].ContextMap()["reason"] != reasonVerifierMismatch {
		t.Errorf("refusal reasons logged: %v, %v", refusals[0].ContextMap(), refusals[1].ContextMap())
	}
	for _, entry := range logs.All() {
		line, _ := json.Marshal(entry.ContextMap())
		for name, secret := range map[string]string{"code": code, "verifier": v, "challenge": q.Get("code_challenge"), "state": "st-m2"} {
			if strings.Contains(entry.Message+string(line), secret) {
				t.Errorf("log line %q %s contains the %s", entry.Message, line, name)
			}
		}
	}
}

func counterValue(t *testing.T, vec *prometheus.CounterVec, label string) float64 {
	t.Helper()
	var m dto.Metric
	if err := vec.WithLabelValues(label).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestMetricsReusedAcrossGuards checks that a second guard in one registry
// (two sites, or a config reload) shares the counter instead of failing.
func TestMetricsReusedAcrossGuards(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m1, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := newMetrics(reg)
	if err != nil {
		t.Fatalf("second registration: %v", err)
	}
	m1.refused(reasonUnknownCode)
	m2.refused(reasonUnknownCode)
	if got := counterValue(t, m1.refusals, reasonUnknownCode); got != 2 {
		t.Errorf("shared counter = %v, want 2", got)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range families {
		if f.GetName() == "caddy_pkce_guard_refusals_total" {
			found = len(f.GetMetric()) == len(allReasons)
		}
	}
	if !found {
		t.Error("caddy_pkce_guard_refusals_total is not registered with a series per reason")
	}
}

// TestBindingExpires checks that a code older than binding_lifetime is
// refused, and that a pending request older than it binds nothing.
func TestBindingExpires(t *testing.T) {
	g, _ := newGuard(t, flowsConfig)
	e := serveGuard(t, g)
	clock := time.Now()
	now = func() time.Time { return clock }
	t.Cleanup(func() { now = time.Now })

	b := newBrowser(t, e)
	q, v := s256Params(publicApp, publicAppCB, "st-x")
	code := codeOf(b.codeFlow(q))
	clock = clock.Add(defaultBindingLifetime + time.Second)
	wantTokenError(t, e.token(t, codeForm(publicApp, publicAppCB, code, v)), "invalid_grant", "expired")

	b = newBrowser(t, e) // no session at the server
	q, v = s256Params(publicApp, publicAppCB, "st-y")
	_, page := b.authorize(q)
	clock = clock.Add(defaultBindingLifetime + time.Second)
	code = codeOf(location(t, b.signIn(page), http.StatusFound))
	wantTokenError(t, e.token(t, codeForm(publicApp, publicAppCB, code, v)), "invalid_grant", "no PKCE challenge")
}

// failingStore fails every operation, like an unreachable Redis.
type failingStore struct{}

func (failingStore) Put(context.Context, string, []byte, time.Duration) error {
	return errors.New("down")
}
func (failingStore) Add(context.Context, string, []byte, time.Duration) (bool, error) {
	return false, errors.New("down")
}
func (failingStore) Take(context.Context, string) ([]byte, error) { return nil, errors.New("down") }

// TestStoreOutageFailsClosed checks that an unreachable store refuses
// instead of letting requests through unchecked.
func TestStoreOutageFailsClosed(t *testing.T) {
	g, _ := newGuard(t, flowsConfig)
	e := serveGuard(t, g)
	b := newBrowser(t, e)
	q, v := s256Params(publicApp, publicAppCB, "st-o")
	code := codeOf(b.codeFlow(q)) // bound while the store works

	g.store = failingStore{}
	before := e.legacy.count("/oauth/token")
	res := e.token(t, codeForm(publicApp, publicAppCB, code, v))
	if res.status != http.StatusServiceUnavailable {
		t.Errorf("token request during a store outage: %d %v, want 503", res.status, res.body)
	}
	unchanged(t, e, "/oauth/token", before)

	auths := e.legacy.count("/authorize")
	resp, _ := b.authorize(q)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("authorization request with state during a store outage: %d, want 503", resp.StatusCode)
	}
	unchanged(t, e, "/authorize", auths)
}

// TestConfidentialWithoutPKCE checks the opt-out for confidential clients:
// they pass with credentials, public clients still need PKCE at the token
// endpoint.
func TestConfidentialWithoutPKCE(t *testing.T) {
	g, _ := newGuard(t, `{"confidential_without_pkce": true, "cookie_keys": ["`+testCookieKey+`"]}`)
	e := serveGuard(t, g)
	b := newBrowser(t, e)

	code := codeOf(b.codeFlow(authParams(confApp, confAppCB, "st-c")))
	form := codeForm(confApp, confAppCB, code, "")
	form.Del("client_id")
	wantTokens(t, e.token(t, form, confApp, confAppSecret))

	code = codeOf(b.codeFlow(authParams(publicApp, publicAppCB, "st-p")))
	before := e.legacy.count("/oauth/token")
	wantTokenError(t, e.token(t, codeForm(publicApp, publicAppCB, code, "")), "invalid_grant", "no PKCE challenge")
	unchanged(t, e, "/oauth/token", before)

	// A confidential client that does send a challenge is held to it.
	q, _ := s256Params(confApp, confAppCB, "st-c2")
	code = codeOf(b.codeFlow(q))
	form = codeForm(confApp, confAppCB, code, "")
	form.Del("client_id")
	wantTokenError(t, e.token(t, form, confApp, confAppSecret), "invalid_grant", "code_verifier is required")
}

// TestPlainWhenListed checks that plain works only when listed.
func TestPlainWhenListed(t *testing.T) {
	g, _ := newGuard(t, `{"methods": ["S256", "plain"], "redirect_uris": {"public-app": ["https://app.example/cb"]}, "cookie_keys": ["`+testCookieKey+`"]}`)
	e := serveGuard(t, g)
	b := newBrowser(t, e)
	v := oauth2.GenerateVerifier()
	code := codeOf(b.codeFlow(authParams(publicApp, publicAppCB, "st-pl", v, "plain")))
	wantTokens(t, e.token(t, codeForm(publicApp, publicAppCB, code, v)))

	v = oauth2.GenerateVerifier()
	code = codeOf(b.codeFlow(authParams(publicApp, publicAppCB, "st-pl2", v))) // no method means plain
	wantTokenError(t, e.token(t, codeForm(publicApp, publicAppCB, code, oauth2.S256ChallengeFromVerifier(v))), "invalid_grant", "does not match")

	resp, body := b.get("/.well-known/openid-configuration", nil)
	if !strings.Contains(body, `"code_challenge_methods_supported":["S256","plain"]`) {
		t.Errorf("discovery (%d) does not advertise S256 and plain: %s", resp.StatusCode, body)
	}
}

// TestRedirectURIFromConfig checks that a client with one configured
// redirect URI may omit redirect_uri, and must then omit it or send the
// same at the token endpoint.
func TestRedirectURIFromConfig(t *testing.T) {
	g, _ := newGuard(t, flowsConfig)
	e := serveGuard(t, g)
	b := newBrowser(t, e)

	q, v := s256Params(publicApp, "", "st-r")
	code := codeOf(b.codeFlow(q))
	wantTokens(t, e.token(t, codeForm(publicApp, "", code, v)))

	resp, _ := b.authorize(authParams(publicApp, "", "st-r2"))
	wantErrorRedirect(t, resp, publicAppCB, "st-r2", "code_challenge is required")

	q, _ = s256Params(otherApp, "", "st-r3")
	resp, body := b.authorize(q)
	wantErrorPage(t, resp, body, "redirect_uri is missing")
}

// TestHandleErrors checks that with handle_errors routes the 400 goes to
// them as a caddyhttp.Error.
func TestHandleErrors(t *testing.T) {
	g, _ := newGuard(t, flowsConfig)
	srv := &caddyhttp.Server{Errors: &caddyhttp.HTTPErrorConfig{Routes: caddyhttp.RouteList{{}}}}
	r := httptest.NewRequest(http.MethodGet, "/authorize?"+authParams(otherApp, otherAppCB, "s").Encode(), nil)
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.ServerCtxKey, srv))
	w := httptest.NewRecorder()
	err := g.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		t.Error("the next handler was called")
		return nil
	}))
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != http.StatusBadRequest || !strings.Contains(he.Err.Error(), "code_challenge is required") {
		t.Errorf("got %v, want a caddyhttp.Error with status 400", err)
	}
}

// TestPendingCookie checks the pending-request cookie: set by an accepted
// authorization request with safe attributes (the __Host- prefix, Secure
// and SameSite=None over HTTPS), sealed, and cleared when the code is bound.
func TestPendingCookie(t *testing.T) {
	g, _ := newGuard(t, flowsConfig)
	legacy := newLegacyServer()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		legacy.ServeHTTP(w, r)
		return nil
	})
	for _, tls := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[tls], func(t *testing.T) {
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _ = g.ServeHTTP(w, r, next) })
			srv := httptest.NewUnstartedServer(h)
			if tls {
				srv.StartTLS()
			} else {
				srv.Start()
			}
			defer srv.Close()
			e := &env{base: srv.URL, legacy: legacy}
			b := newBrowser(t, e)
			if tls {
				b.client.Transport = srv.Client().Transport
			}
			q, v := s256Params(publicApp, publicAppCB, "st-ck")
			resp, page := b.authorize(q)
			var set *http.Cookie
			for _, c := range resp.Cookies() {
				if strings.Contains(c.Name, cookiePrefix) {
					set = c
				}
			}
			if set == nil {
				t.Fatal("no pending-request cookie set")
			}
			wantName, wantSameSite := cookiePrefix, http.SameSiteLaxMode
			if tls {
				wantName, wantSameSite = secureCookiePrefix, http.SameSiteNoneMode
			}
			if !strings.HasPrefix(set.Name, wantName) || !set.HttpOnly || set.Secure != tls || set.SameSite != wantSameSite ||
				set.Path != "/" || set.Domain != "" || set.MaxAge != int(defaultBindingLifetime.Seconds()) {
				t.Errorf("cookie %s", set.String())
			}
			for _, secret := range []string{q.Get("code_challenge"), "st-ck", publicAppCB, url.QueryEscape(publicAppCB)} {
				if strings.Contains(set.Value, secret) {
					t.Errorf("cookie value shows %q", secret)
				}
			}
			u, _ := url.Parse(srv.URL)
			if n := len(b.client.Jar.Cookies(u)); n == 0 {
				t.Fatal("the browser did not keep the cookie")
			}
			resp = b.signIn(page)
			code := codeOf(location(t, resp, http.StatusFound))
			for _, c := range b.client.Jar.Cookies(u) {
				if strings.Contains(c.Name, cookiePrefix) {
					t.Errorf("cookie %s still set after the code was bound", c.Name)
				}
			}
			if tls {
				e.base = srv.URL
				req, _ := http.NewRequest(http.MethodPost, srv.URL+"/oauth/token", strings.NewReader(codeForm(publicApp, publicAppCB, code, v).Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				tr, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				tr.Body.Close()
				if tr.StatusCode != http.StatusOK {
					t.Errorf("token request over HTTPS: %d", tr.StatusCode)
				}
			} else {
				wantTokens(t, e.token(t, codeForm(publicApp, publicAppCB, code, v)))
			}
		})
	}
}

// TestTamperedCookieIgnored checks that a forged or altered cookie binds
// nothing.
func TestTamperedCookieIgnored(t *testing.T) {
	g, _ := newGuard(t, flowsConfig)
	e := serveGuard(t, g)
	victim, attacker := newBrowser(t, e), newBrowser(t, e)
	q, _ := s256Params(publicApp, publicAppCB, "")
	_, page := victim.authorize(q)
	// The attacker's own sealed cookie, for their own challenge, planted
	// under the name the victim's flow would use, does not open there...
	qa, va := s256Params(publicApp, publicAppCB, "")
	resp, _ := attacker.authorize(qa)
	u, _ := url.Parse(e.base)
	for _, c := range resp.Cookies() {
		v := []byte(c.Value)
		if i := len(v) / 2; v[i] == 'A' {
			v[i] = 'B'
		} else {
			v[i] = 'A'
		}
		attacker.client.Jar.SetCookies(u, []*http.Cookie{{Name: c.Name, Value: string(v)}})
	}
	code := codeOf(location(t, attacker.signIn(page), http.StatusFound))
	wantTokenError(t, e.token(t, codeForm(publicApp, publicAppCB, code, va)), "invalid_grant", "no PKCE challenge")
}
