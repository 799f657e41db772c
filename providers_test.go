package pkceauth

import (
	"encoding/json"
	"fmt"
	"html"
	"maps"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-pkce/caddy-pkce/internal/testop"
)

// Integration tests of named providers: the pkce app declares providers
// once and pkce_auth handlers on several routes and sites name them.

// namedEcho is the echo upstream of these tests: echoBody plus the
// provider placeholder and the Authorization header the upstream got.
var namedEcho = echoBody + "\nprovider={http.auth.user.provider}\nauthz={http.request.header.Authorization}"

// namedSite is a running config with a pkce app and several routes.
type namedSite struct {
	port    int
	logFile string
}

// base is the site's origin for host (127.0.0.1 or localhost).
func (n *namedSite) base(host string) string { return fmt.Sprintf("http://%s:%d", host, n.port) }

// namedProvider declares testop op as a provider of the app.
func namedProvider(op *testop.Provider, extra map[string]any) map[string]any {
	p := map[string]any{
		"issuer":        op.Issuer(),
		"client_id":     op.ClientID(),
		"cookie_secure": "never",
		"session_keys":  []string{testKeyA},
	}
	for k, v := range extra {
		p[k] = v
	}
	return p
}

// namedRoute is a route: an optional matcher, then pkce_auth with the
// given settings, then the echo upstream.
func namedRoute(match map[string]any, auth map[string]any) map[string]any {
	handler := map[string]any{"handler": "pkce_auth"}
	for k, v := range auth {
		handler[k] = v
	}
	r := map[string]any{"handle": []any{handler, map[string]any{
		"handler": "static_response", "status_code": 200,
		"headers": map[string][]string{"Content-Type": {"text/plain; charset=utf-8"}},
		"body":    namedEcho,
	}}}
	if match != nil {
		r["match"] = []any{match}
	}
	return r
}

// namedConfig is a whole config: the pkce app with providers and one
// server on port with routes.
func namedConfig(t *testing.T, port int, logFile string, providers map[string]any, routes []any) map[string]any {
	return map[string]any{
		"storage": map[string]any{"module": "file_system", "root": t.TempDir()},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{
			"writer":  map[string]any{"output": "file", "filename": logFile, "roll": false},
			"encoder": map[string]any{"format": "json"},
			"level":   "DEBUG",
		}}},
		"apps": map[string]any{
			"pkce": map[string]any{"providers": providers},
			"http": map[string]any{
				"grace_period": "1ms",
				"servers": map[string]any{"srv0": map[string]any{
					"listen":          []string{fmt.Sprintf("127.0.0.1:%d", port)},
					"routes":          routes,
					"automatic_https": map[string]any{"disable": true},
				}},
			},
		},
	}
}

// startNamed loads a config with the pkce app and unloads it at the end.
func startNamed(t *testing.T, providers map[string]any, routes []any) *namedSite {
	t.Helper()
	n := &namedSite{port: pickFreePort(t), logFile: filepath.Join(t.TempDir(), "caddy.log")}
	loadCaddyJSON(t, namedConfig(t, n.port, n.logFile, providers, routes))
	t.Cleanup(func() {
		if msg := postCaddyConfig(t, map[string]any{}); msg != "" {
			t.Errorf("unloading the config: %s", msg)
		}
	})
	return n
}

// namedLogin runs a login from a navigation to target through op, whose
// callback must be provider's, and returns the callback's reply.
func namedLogin(t *testing.T, b *browser, op *testop.Provider, base, target, provider string) *reply {
	t.Helper()
	r := b.navigate(target)
	expectStatus(t, r, http.StatusFound)
	return namedFinish(t, b, op, base, r, provider)
}

// namedFinish completes a login whose start answered r.
func namedFinish(t *testing.T, b *browser, op *testop.Provider, base string, r *reply, provider string) *reply {
	t.Helper()
	if !strings.HasPrefix(r.Location(), op.Issuer()+testop.AuthorizePath+"?") {
		t.Fatalf("login start redirected to %q, want %s's authorization endpoint", r.Location(), op.Issuer())
	}
	r = b.get(r.Location())
	expectStatus(t, r, http.StatusFound)
	callback := base + "/oauth2/" + provider + "/callback?"
	if !strings.HasPrefix(r.Location(), callback) {
		t.Fatalf("provider redirected to %q, want %s", r.Location(), callback)
	}
	r = b.navigate(r.Location(), "Sec-Fetch-Site", "cross-site")
	expectStatus(t, r, http.StatusSeeOther)
	return r
}

// TestNamedProviderAcrossRoutes: one provider, three routes of one site
// with different route settings. A login started on one route serves the
// others without another round trip, each route gets its own headers and
// the claims it asked for (kept at login although the login ran
// elsewhere), and the provider was discovered once for all handlers.
func TestNamedProviderAcrossRoutes(t *testing.T) {
	op := testop.New(t, testop.Config{})
	u := testop.DefaultUser()
	u.Extra = map[string]any{"department": "R&D"}
	op.SetUser(u)
	n := startNamed(t, map[string]any{"corp": namedProvider(op, nil)}, []any{
		namedRoute(map[string]any{"path": []string{"/a/*"}}, map[string]any{
			"providers": []string{"corp"}, "headers": map[string]string{"X-User": "email"},
		}),
		namedRoute(map[string]any{"path": []string{"/b/*"}}, map[string]any{
			"providers": []string{"corp"}, "headers": map[string]string{"X-Groups": "groups"},
			"claims": []string{"department"}, "pass_access_token": "Authorization",
		}),
		namedRoute(nil, map[string]any{"providers": []string{"corp"}}),
	})
	base := n.base("127.0.0.1")
	b := newBrowser(t, nil)

	r := namedLogin(t, b, op, base, base+"/a/start?x=1", "corp")
	if r.Location() != "/a/start?x=1" {
		t.Errorf("after login: Location %q, want /a/start?x=1", r.Location())
	}
	if c := r.SetCookie("pkce_session_corp"); c == nil || c.Value == "" {
		t.Fatalf("login set no pkce_session_corp cookie: %v", r.Cookies)
	}

	a := b.navigate(base + "/a/start?x=1")
	expectStatus(t, a, http.StatusOK)
	bb := b.navigate(base+"/b/page", "X-User", "forged-but-not-a-header-of-b")
	expectStatus(t, bb, http.StatusOK)
	root := b.fetch(base + "/other")
	expectStatus(t, root, http.StatusOK)

	fa, fb, fr := a.Fields(), bb.Fields(), root.Fields()
	for name, f := range map[string]map[string]string{"a": fa, "b": fb, "root": fr} {
		if f["id"] != "alice-sub" || f["provider"] != "corp" {
			t.Errorf("route %s: id %q provider %q, want alice-sub and corp", name, f["id"], f["provider"])
		}
		if f["cookie"] != "" {
			t.Errorf("route %s: upstream got the module's cookies %q", name, f["cookie"])
		}
	}
	if fa["x_user"] != "alice@example.com" || fa["x_groups"] != "" {
		t.Errorf("route a: X-User %q X-Groups %q, want its own header only", fa["x_user"], fa["x_groups"])
	}
	if fb["x_groups"] != "staff,admins" || fb["x_user"] != "forged-but-not-a-header-of-b" {
		t.Errorf("route b: X-Groups %q X-User %q, want its own header (and the client's X-User untouched)", fb["x_groups"], fb["x_user"])
	}
	// department is asked for only by route b; the login ran through
	// the catch-all route's callback after starting on route a.
	if fb["claim_department"] != "R&D" {
		t.Errorf("route b: claims.department %q, want R&D", fb["claim_department"])
	}
	if !strings.HasPrefix(fb["authz"], "Bearer ") || len(fb["authz"]) < 20 {
		t.Errorf("route b: Authorization %q, want the access token as Bearer", fb["authz"])
	}
	if fa["authz"] != "" || fr["authz"] != "" {
		t.Errorf("routes without pass_access_token got Authorization %q / %q", fa["authz"], fr["authz"])
	}

	c := op.Counts()
	if c.Authorize != 1 || c.Token != 1 {
		t.Errorf("provider saw %d authorization and %d token requests, want one login", c.Authorize, c.Token)
	}
	if c.Discovery != 1 {
		t.Errorf("provider discovery fetched %d times for three handlers, want once (shared provider state)", c.Discovery)
	}

	// Logout on the provider's path ends the session for every route.
	r = b.navigate(base + "/oauth2/corp/logout")
	expectStatus(t, r, http.StatusSeeOther)
	if r = b.fetch(base + "/b/page"); r.Status != http.StatusUnauthorized {
		t.Errorf("after logout: %s; want 401", r)
	}
}

// TestNamedProviderTwoSites: two sites (hosts) name one provider; each
// logs in on its own host (cookies are host-only) through the one
// provider instance, discovered once.
func TestNamedProviderTwoSites(t *testing.T) {
	op := testop.New(t, testop.Config{})
	n := startNamed(t, map[string]any{"corp": namedProvider(op, nil)}, []any{
		namedRoute(map[string]any{"host": []string{"127.0.0.1"}}, map[string]any{
			"providers": []string{"corp"}, "headers": map[string]string{"X-User": "email"},
		}),
		namedRoute(map[string]any{"host": []string{"localhost"}}, map[string]any{
			"providers": []string{"corp"}, "headers": map[string]string{"X-User": "preferred_username"},
		}),
	})
	b := newBrowser(t, nil)
	for host, want := range map[string]string{"127.0.0.1": "alice@example.com", "localhost": "alice"} {
		base := n.base(host)
		namedLogin(t, b, op, base, base+"/page", "corp")
		r := b.navigate(base + "/page")
		expectStatus(t, r, http.StatusOK)
		if f := r.Fields(); f["id"] != "alice-sub" || f["x_user"] != want {
			t.Errorf("%s: id %q X-User %q, want alice-sub and %q", host, f["id"], f["x_user"], want)
		}
	}
	if c := op.Counts(); c.Discovery != 1 || c.Token != 2 {
		t.Errorf("discovery %d, token %d; want discovery once for both sites and one login per host", c.Discovery, c.Token)
	}
}

var hrefRE = regexp.MustCompile(`<a href="([^"]*)">([^<]*)</a>`)

// chooserLinks returns the chooser page's links: display name to href.
func chooserLinks(t *testing.T, r *reply) map[string]string {
	t.Helper()
	links := map[string]string{}
	for _, m := range hrefRE.FindAllStringSubmatch(r.Body, -1) {
		links[html.UnescapeString(m[2])] = html.UnescapeString(m[1])
	}
	return links
}

// TestProviderChooser: a route with two providers (two testop instances).
// A navigation without a session gets the chooser listing both, with
// escaped display names and links back to the same URL; each link logs in
// through its provider with its own callback and cookie, and the
// placeholders name the right identity. API requests still get 401.
func TestProviderChooser(t *testing.T) {
	corp := testop.New(t, testop.Config{})
	google := testop.New(t, testop.Config{ClientID: "google-client"})
	google.SetUser(testop.User{Subject: "bob-google", Email: "bob@gmail.example", EmailVerified: true, Name: "Bob"})
	n := startNamed(t, map[string]any{
		"corp":   namedProvider(corp, map[string]any{"display_name": `Corp <SSO> & "Co"`}),
		"google": namedProvider(google, nil),
	}, []any{namedRoute(nil, map[string]any{"providers": []string{"corp", "google"}})})
	base := n.base("127.0.0.1")

	// API requests: 401 as with one provider.
	b := newBrowser(t, nil)
	r := b.fetch(base + "/api/data")
	expectStatus(t, r, http.StatusUnauthorized)
	if r.Header.Get("WWW-Authenticate") != "Bearer" || strings.Contains(r.Body, "<html") {
		t.Errorf("API request without session: %s; want the JSON 401 with WWW-Authenticate: Bearer", r)
	}

	r = b.navigate(base + "/docs/page?x=1&y=%2F2")
	expectStatus(t, r, http.StatusUnauthorized)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") || r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("chooser Content-Type %q Cache-Control %q", ct, r.Header.Get("Cache-Control"))
	}
	if !strings.Contains(r.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("chooser CSP %q", r.Header.Get("Content-Security-Policy"))
	}
	if strings.Contains(r.Body, `<SSO>`) || !strings.Contains(r.Body, `Corp &lt;SSO&gt; &amp; &#34;Co&#34;`) {
		t.Errorf("display name not escaped in the chooser:\n%s", r.Body)
	}
	expectNoSetCookie(t, r)
	links := chooserLinks(t, r)
	want := map[string]string{
		`Corp <SSO> & "Co"`: "/docs/page?x=1&y=%2F2&pkce_provider=corp",
		"google":            "/docs/page?x=1&y=%2F2&pkce_provider=google",
	}
	if !maps.Equal(links, want) {
		t.Fatalf("chooser links %v, want %v", links, want)
	}

	// Log in through each provider, each in its own browser.
	for _, tc := range []struct {
		provider string
		op       *testop.Provider
		id       string
		email    string
		cookie   string
	}{
		{"corp", corp, "alice-sub", "alice@example.com", "pkce_session_corp"},
		{"google", google, "bob-google", "bob@gmail.example", "pkce_session_google"},
	} {
		t.Run(tc.provider, func(t *testing.T) {
			b := newBrowser(t, nil)
			r := b.navigate(base + "/docs/page?x=1&y=%2F2")
			href := ""
			for _, h := range chooserLinks(t, r) {
				if strings.HasSuffix(h, "="+tc.provider) {
					href = h
				}
			}
			r = b.navigate(base + href)
			expectStatus(t, r, http.StatusFound)
			loc, _ := url.Parse(r.Location())
			if got := loc.Query().Get("client_id"); got != tc.op.ClientID() {
				t.Errorf("authorization request client_id %q, want %q", got, tc.op.ClientID())
			}
			if got := loc.Query().Get("redirect_uri"); got != base+"/oauth2/"+tc.provider+"/callback" {
				t.Errorf("redirect_uri %q, want the provider's own callback", got)
			}
			var txn string
			for _, c := range r.Cookies {
				txn = c.Name
			}
			if !strings.HasPrefix(txn, "pkce_txn_"+tc.provider+"_") {
				t.Errorf("transaction cookie %q, want the provider's own prefix pkce_txn_%s_", txn, tc.provider)
			}
			r = namedFinish(t, b, tc.op, base, r, tc.provider)
			if r.Location() != "/docs/page?x=1&y=%2F2" {
				t.Errorf("return path %q, want /docs/page?x=1&y=%%2F2 (the chooser's URL without the provider choice)", r.Location())
			}
			if c := r.SetCookie(tc.cookie); c == nil {
				t.Errorf("no %s cookie set: %v", tc.cookie, r.Cookies)
			}
			r = b.navigate(base + "/docs/page")
			expectStatus(t, r, http.StatusOK)
			f := r.Fields()
			if f["id"] != tc.id || f["email"] != tc.email || f["provider"] != tc.provider {
				t.Errorf("signed in as id %q email %q provider %q, want %q %q %q", f["id"], f["email"], f["provider"], tc.id, tc.email, tc.provider)
			}
			if f["cookie"] != "" {
				t.Errorf("upstream got the module's cookies %q", f["cookie"])
			}
		})
	}

	// With sessions of both, the first provider of the route's list wins,
	// and neither cookie reaches the upstream. (A browser signed in with
	// one is not shown the chooser, so each login runs in its own.)
	at := &site{base: base}
	both := newBrowser(t, nil)
	for _, tc := range []struct {
		op       *testop.Provider
		provider string
	}{{google, "google"}, {corp, "corp"}} {
		b := newBrowser(t, nil)
		r := namedLogin(t, b, tc.op, base, base+"/x?pkce_provider="+tc.provider, tc.provider)
		if r.Location() != "/x" {
			t.Errorf("chosen login returned to %q, want /x", r.Location())
		}
		c := b.cookie(at, "pkce_session_"+tc.provider)
		if c == nil {
			t.Fatalf("no session cookie for %s", tc.provider)
		}
		both.setCookie(at, c.Name, c.Value)
	}
	r = both.navigate(base+"/x", "Cookie", "app=1")
	expectStatus(t, r, http.StatusOK)
	if f := r.Fields(); f["provider"] != "corp" || f["cookie"] != "app=1" {
		t.Errorf("with both sessions: provider %q cookie %q, want corp (first listed) and only the app's cookie", f["provider"], f["cookie"])
	}
}

// TestProviderChooserReturnPath: the chooser's links never lead off the
// site. A URL that is not a safe return path gets links to "/", and a
// provider choice that the route does not have shows the chooser again.
func TestProviderChooserReturnPath(t *testing.T) {
	corp := testop.New(t, testop.Config{})
	other := testop.New(t, testop.Config{})
	n := startNamed(t, map[string]any{
		"corp":  namedProvider(corp, nil),
		"other": namedProvider(other, nil),
		"third": namedProvider(other, map[string]any{"client_id": "third"}),
	}, []any{namedRoute(nil, map[string]any{"providers": []string{"corp", "other"}})})
	s := &site{t: t, port: n.port, base: n.base("127.0.0.1")}
	b := newBrowser(t, nil)

	for _, line := range []string{
		"GET //evil.example/x HTTP/1.1",
		"GET /%2F%2Fevil.example HTTP/1.1",
		"GET /\\evil.example HTTP/1.1",
	} {
		r := b.raw(s, line, navigationHeaders)
		expectStatus(t, r, http.StatusUnauthorized)
		links := chooserLinks(t, r)
		if links["corp"] != "/?pkce_provider=corp" || links["other"] != "/?pkce_provider=other" {
			t.Errorf("%s: chooser links %v, want links to / only", line, links)
		}
	}

	// A choice the route does not offer starts nothing.
	for _, q := range []string{"pkce_provider=third", "pkce_provider=nope", "pkce_provider=corp&x=1", "xpkce_provider=corp"} {
		r := b.navigate(s.base + "/p?" + q)
		if r.Status != http.StatusUnauthorized || len(chooserLinks(t, r)) != 2 {
			t.Errorf("?%s: %s; want the chooser", q, r)
		}
	}
	if c := corp.Counts().Authorize + other.Counts().Authorize; c != 0 {
		t.Errorf("%d authorization requests, want none", c)
	}

	// The return path of a chosen login is still checked.
	r := b.raw(s, "GET //evil.example/x?pkce_provider=corp HTTP/1.1", navigationHeaders)
	expectStatus(t, r, http.StatusFound)
	r = b.get(r.Location())
	r = b.navigate(r.Location(), "Sec-Fetch-Site", "cross-site")
	expectStatus(t, r, http.StatusSeeOther)
	if r.Location() != "/" {
		t.Errorf("login from //evil.example/x returned to %q, want /", r.Location())
	}
}

// TestNamedProviderConfigErrors: configs that cannot work are refused at
// load with a message naming what is wrong.
func TestNamedProviderConfigErrors(t *testing.T) {
	op := testop.New(t, testop.Config{})
	port := pickFreePort(t)
	log := filepath.Join(t.TempDir(), "caddy.log")
	corp := func(extra map[string]any) map[string]any { return namedProvider(op, extra) }
	for _, tc := range []struct {
		name      string
		providers map[string]any // nil: no pkce app
		auth      map[string]any
		want      string
	}{
		{"unknown provider", map[string]any{"corp": corp(nil)}, map[string]any{"providers": []string{"crop"}},
			`unknown provider "crop"; the pkce app declares corp`},
		{"no app", nil, map[string]any{"providers": []string{"corp"}},
			"no pkce app is configured"},
		{"provider setting on the handler", map[string]any{"corp": corp(nil)},
			map[string]any{"providers": []string{"corp"}, "client_id": "x", "scopes": []string{"openid"}},
			"client_id, scopes are provider-level"},
		{"issuer on the handler", map[string]any{"corp": corp(nil)},
			map[string]any{"providers": []string{"corp"}, "issuer": "https://idp.example"},
			"issuer is provider-level"},
		{"route setting in the provider", map[string]any{"corp": corp(map[string]any{"headers": map[string]string{"X-User": "email"}})},
			map[string]any{"providers": []string{"corp"}}, "provider corp: headers is a route setting"},
		{"invalid provider", map[string]any{"corp": corp(map[string]any{"client_id": nil})},
			map[string]any{"providers": []string{"corp"}}, "provider corp: client_id is required"},
		{"bad name", map[string]any{"co_rp": corp(nil)}, map[string]any{"providers": []string{"co_rp"}},
			`"co_rp" is not a valid provider name`},
		{"named twice", map[string]any{"corp": corp(nil)}, map[string]any{"providers": []string{"corp", "corp"}},
			"corp is named twice"},
		{"shared callback path", map[string]any{
			"corp":  corp(map[string]any{"callback_path": "/cb"}),
			"corp2": corp(map[string]any{"callback_path": "/cb"}),
		}, map[string]any{"providers": []string{"corp", "corp2"}}, "both use the path /cb"},
		{"colliding cookies", map[string]any{
			"a": corp(map[string]any{"cookie_name": "sess"}),
			"b": corp(map[string]any{"cookie_name": "sess_1"}),
		}, map[string]any{"providers": []string{"a"}}, "cookie_name sess and sess_1 collide"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := namedConfig(t, port, log, tc.providers, []any{namedRoute(nil, tc.auth)})
			if tc.providers == nil {
				delete(cfg["apps"].(map[string]any), "pkce")
			}
			msg := loadCaddyError(t, cfg)
			var body struct{ Error string }
			if json.Unmarshal([]byte(msg), &body) == nil && body.Error != "" {
				msg = body.Error
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("load error %q, want it to contain %q", msg, tc.want)
			}
		})
	}
}

// TestNamedProviderCaddyfile: the global option and the referencing
// directive, loaded as users write them, log in across two routes.
func TestNamedProviderCaddyfile(t *testing.T) {
	op := testop.New(t, testop.Config{})
	port := pickFreePort(t)
	config := caddyfileGlobals(t, t.TempDir(), fmt.Sprintf(`	pkce {
		provider corp {
			display_name "Corp SSO"
			issuer %s
			client_id %s
			cookie_secure never
		}
	}
`, op.Issuer(), op.ClientID())) + fmt.Sprintf(`
http://127.0.0.1:%d {
	handle /api/* {
		pkce_auth corp {
			header X-User email
		}
		respond "api user={http.auth.user.id} x_user={http.request.header.X-User} provider={http.auth.user.provider}" 200
	}
	handle {
		pkce_auth corp
		respond "web user={http.auth.user.id} x_user={http.request.header.X-User}" 200
	}
}
`, port)
	loadCaddyfile(t, config)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	b := newBrowser(t, nil)
	namedLogin(t, b, op, base, base+"/home", "corp")
	r := b.navigate(base + "/home")
	expectStatus(t, r, http.StatusOK)
	if r.Body != "web user=alice-sub x_user=" {
		t.Errorf("web route: %q", r.Body)
	}
	r = b.fetch(base + "/api/me")
	expectStatus(t, r, http.StatusOK)
	if r.Body != "api user=alice-sub x_user=alice@example.com provider=corp" {
		t.Errorf("api route: %q", r.Body)
	}
}

// TestInlineAndNamedSideBySide: an inline handler and a named provider
// on the same site keep separate sessions (cookie names, callbacks).
func TestInlineAndNamedSideBySide(t *testing.T) {
	op := testop.New(t, testop.Config{})
	n := startNamed(t, map[string]any{"corp": namedProvider(op, nil)}, []any{
		namedRoute(map[string]any{"path": []string{"/named/*", "/oauth2/corp/*"}}, map[string]any{"providers": []string{"corp"}}),
		namedRoute(nil, map[string]any{
			"issuer": op.Issuer(), "client_id": op.ClientID(), "cookie_secure": "never", "session_keys": []string{testKeyA},
		}),
	})
	base := n.base("127.0.0.1")
	b := newBrowser(t, nil)
	namedLogin(t, b, op, base, base+"/named/x", "corp")
	if r := b.fetch(base + "/inline"); r.Status != http.StatusUnauthorized {
		t.Errorf("inline route with only the named provider's session: %s; want 401", r)
	}
	r := b.navigate(base + "/inline")
	expectStatus(t, r, http.StatusFound)
	r = b.get(r.Location())
	if !strings.HasPrefix(r.Location(), base+"/oauth2/callback?") {
		t.Fatalf("inline login came back to %q, want the inline callback", r.Location())
	}
	r = b.navigate(r.Location(), "Sec-Fetch-Site", "cross-site")
	expectStatus(t, r, http.StatusSeeOther)
	names := b.cookieNames(&site{base: base})
	if !slices.Contains(names, "pkce_session") || !slices.Contains(names, "pkce_session_corp") {
		t.Errorf("cookies %v, want both pkce_session and pkce_session_corp", names)
	}
	// An unknown placeholder is left as written.
	if f := b.navigate(base + "/inline").Fields(); f["id"] != "alice-sub" || f["provider"] != "{http.auth.user.provider}" {
		t.Errorf("inline route: id %q provider %q, want alice-sub and no provider placeholder", f["id"], f["provider"])
	}
}

// loadCaddyfile loads a Caddyfile config through caddytest and unloads it
// when the test ends.
func loadCaddyfile(t *testing.T, config string) {
	t.Helper()
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{
		AdminPort: adminPort, LoadRequestTimeout: 10 * time.Second, TestRequestTimeout: 10 * time.Second,
	})
	tester.InitServer(config, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	t.Cleanup(func() { postCaddyConfig(t, map[string]any{}) })
}

// TestNamedProviderRevokeAndReload: a named provider's server-side store
// and session cache are shared by its routes, so an admin revocation
// reaches them all at once; a config reload provisions the provider anew
// (its own discovery) and cleans the old one up, and sessions survive it.
func TestNamedProviderRevokeAndReload(t *testing.T) {
	op := testop.New(t, testop.Config{})
	storage := t.TempDir()
	providers := map[string]any{"corp": namedProvider(op, map[string]any{
		// A long cache: only the shared cache's invalidation can end
		// the session on both routes at once.
		"session": map[string]any{"store": "caddy_storage", "cache_ttl": "1h"},
	})}
	routes := func(header string) []any {
		return []any{
			namedRoute(map[string]any{"path": []string{"/a/*"}}, map[string]any{"providers": []string{"corp"}, "headers": map[string]string{header: "email"}}),
			namedRoute(nil, map[string]any{"providers": []string{"corp"}}),
		}
	}
	port := pickFreePort(t)
	load := func(header string) {
		cfg := namedConfig(t, port, filepath.Join(t.TempDir(), "caddy.log"), providers, routes(header))
		cfg["storage"] = map[string]any{"module": "file_system", "root": storage}
		loadCaddyJSON(t, cfg)
	}
	load("X-User")
	t.Cleanup(func() { postCaddyConfig(t, map[string]any{}) })
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	alice := newBrowser(t, nil)
	namedLogin(t, alice, op, base, base+"/a/x", "corp")
	for _, path := range []string{"/a/x", "/b"} {
		expectStatus(t, alice.fetch(base+path), http.StatusOK)
	}
	if n := len(serverHandlers()); n != 1 {
		t.Errorf("%d server-side stores registered for the admin API, want the provider's one", n)
	}

	// A reload: a new provider instance, the old one cleaned up.
	load("X-Email")
	if n := len(serverHandlers()); n != 1 {
		t.Errorf("after a reload %d server-side stores are registered, want 1 (the old provider cleaned up)", n)
	}
	r := alice.fetch(base + "/a/x")
	expectStatus(t, r, http.StatusOK)
	if f := r.Fields(); f["id"] != "alice-sub" {
		t.Errorf("after reload: id %q", f["id"])
	}
	// Discovery runs in the background after provisioning.
	for deadline := time.Now().Add(5 * time.Second); op.Counts().Discovery < 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if c := op.Counts(); c.Discovery != 2 {
		t.Errorf("discovery fetched %d times over two config loads, want once per load", c.Discovery)
	}

	status, body := adminRevoke(t, http.MethodPost, `{"subject": "alice-sub"}`)
	if status != http.StatusOK || !strings.Contains(body, `"revoked":1`) {
		t.Fatalf("revoke: %d %s; want one session revoked", status, body)
	}
	for _, path := range []string{"/a/x", "/b"} {
		if r := alice.fetch(base + path); r.Status != http.StatusUnauthorized {
			t.Errorf("%s after revocation: %s; want 401", path, r)
		}
	}
}

// TestNamedProviderRules: routes naming one provider each apply their own
// rules to the shared session (a decision is never carried from one route
// to another), a rule claim asked for only by one route is kept at login
// wherever the login ran, and a step-up route sends the shared provider's
// login with its acr_values, checked at the provider's callback.
func TestNamedProviderRules(t *testing.T) {
	op := testop.New(t, testop.Config{})
	u := testop.DefaultUser()
	u.Extra = map[string]any{"realm_access": map[string]any{"roles": []any{"editor"}}}
	op.SetUser(u)
	n := startNamed(t, map[string]any{"corp": namedProvider(op, nil)}, []any{
		namedRoute(map[string]any{"path": []string{"/staff/*"}}, map[string]any{
			"providers": []string{"corp"}, "allow": []any{map[string]any{"groups": []string{"staff"}}},
		}),
		namedRoute(map[string]any{"path": []string{"/ops/*"}}, map[string]any{
			"providers": []string{"corp"}, "allow": []any{map[string]any{"groups": []string{"ops"}}},
		}),
		namedRoute(map[string]any{"path": []string{"/edit/*"}}, map[string]any{
			"providers": []string{"corp"}, "allow": []any{map[string]any{"claims": map[string]any{"realm_access.roles": []string{"editor"}}}},
		}),
		namedRoute(map[string]any{"path": []string{"/gold/*"}}, map[string]any{
			"providers": []string{"corp"}, "require_acr": []string{"gold"},
		}),
		namedRoute(nil, map[string]any{"providers": []string{"corp"}}),
	})
	base := n.base("127.0.0.1")
	b := newBrowser(t, nil)
	namedLogin(t, b, op, base, base+"/other", "corp")

	// The same session, in any order: allowed, refused, allowed.
	for _, c := range []struct {
		path string
		want int
	}{{"/staff/x", 200}, {"/ops/x", 403}, {"/staff/y", 200}, {"/edit/x", 200}, {"/ops/y", 403}} {
		if r := b.fetch(base + c.path); r.Status != c.want {
			t.Errorf("%s: %s; want %d", c.path, r, c.want)
		}
	}
	if c := op.Counts(); c.Authorize != 1 {
		t.Errorf("%d logins for one session, want 1 (the editor role was not kept at the first login?)", c.Authorize)
	}

	// Step-up: the session's login met no acr; the gold route sends the
	// navigation to the provider with acr_values=gold.
	r := b.navigate(base + "/gold/page")
	expectStatus(t, r, http.StatusFound)
	loc, err := url.Parse(r.Location())
	if err != nil || loc.Query().Get("acr_values") != "gold" {
		t.Fatalf("step-up login to %q, want acr_values=gold", r.Location())
	}
	r = namedFinish(t, b, op, base, r, "corp")
	if r.Location() != "/gold/page" {
		t.Errorf("after step-up: Location %q", r.Location())
	}
	expectStatus(t, b.fetch(base+"/gold/page"), http.StatusOK)

	// A provider that ignores the requested acr is refused at the callback.
	b2 := newBrowser(t, nil)
	op.Misbehave(testop.Misbehaviour{WeakACR: true})
	r = b2.navigate(base + "/gold/page")
	expectStatus(t, r, http.StatusFound)
	r = b2.get(r.Location())
	r = b2.navigate(r.Location(), "Sec-Fetch-Site", "cross-site")
	expectStatus(t, r, http.StatusForbidden)
	if c := r.SetCookie("pkce_session_corp"); c != nil && c.Value != "" {
		t.Error("a login with a weaker acr than requested set a session")
	}
}

// TestNamedProviderBearer: bearer mode on a route naming a provider takes
// the provider's tokens (its issuer, its keys), while another route of the
// same provider keeps answering token-less API calls with a plain 401.
func TestNamedProviderBearer(t *testing.T) {
	op := testop.New(t, testop.Config{})
	other := testop.New(t, testop.Config{})
	n := startNamed(t, map[string]any{"corp": namedProvider(op, nil)}, []any{
		namedRoute(map[string]any{"path": []string{"/api/*"}}, map[string]any{
			"providers": []string{"corp"}, "bearer": map[string]any{"audiences": []string{testAPIAudience}},
			"headers": map[string]string{"X-User": "email"},
		}),
		namedRoute(nil, map[string]any{"providers": []string{"corp"}}),
	})
	base := n.base("127.0.0.1")
	b := newBrowser(t, nil)
	good := op.SignToken(op.AccessTokenClaims(testAPIAudience, "read"), "at+jwt", testop.Genuine)
	if r := callAPI(b, base+"/api/x", "Bearer "+good); r.Status != http.StatusOK || r.Fields()["provider"] != "corp" {
		t.Errorf("the provider's token: %s (fields %v); want 200 as corp", r, r.Fields())
	}
	foreign := other.SignToken(other.AccessTokenClaims(testAPIAudience, "read"), "at+jwt", testop.Genuine)
	if r := callAPI(b, base+"/api/x", "Bearer "+foreign); r.Status != http.StatusUnauthorized {
		t.Errorf("another provider's token: %s; want 401", r)
	}
	r := callAPI(b, base+"/other")
	if r.Status != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") != "Bearer" {
		t.Errorf("route without bearer: %s, WWW-Authenticate %q; want 401 Bearer", r, r.Header.Get("WWW-Authenticate"))
	}
}
