package pkceauth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-pkce/caddy-pkce/internal/testop"
)

// echoHandler is the echo upstream of the integration tests.
func echoHandler() map[string]any {
	return map[string]any{
		"handler":     "static_response",
		"status_code": 200,
		"headers":     map[string][]string{"Content-Type": {"text/plain; charset=utf-8"}},
		"body":        echoBody,
	}
}

// innerAuth is a second pkce_auth handler for the same provider, cookie
// and keys as the site's own, as a route of an inline config has.
func innerAuth(op *testop.Provider, extra map[string]any) map[string]any {
	auth := map[string]any{
		"handler":       "pkce_auth",
		"issuer":        op.Issuer(),
		"client_id":     op.ClientID(),
		"cookie_secure": "never",
		"session_keys":  []string{testKeyA},
	}
	for k, v := range extra {
		auth[k] = v
	}
	return auth
}

// startRoutesSite loads a config whose server has the given routes, as an
// inline Caddyfile config with a pkce_auth in several handle blocks has:
// the handlers share the callback path, the cookie and the keys.
func startRoutesSite(t *testing.T, op *testop.Provider, routes ...any) *site {
	t.Helper()
	s := &site{t: t, op: op, port: pickFreePort(t), logFile: filepath.Join(t.TempDir(), "caddy.log")}
	s.opts.storage = t.TempDir()
	s.base = fmt.Sprintf("http://127.0.0.1:%d", s.port)
	cfg := s.config()
	cfg["apps"].(map[string]any)["http"].(map[string]any)["servers"].(map[string]any)["srv0"].(map[string]any)["routes"] = routes
	loadCaddyJSON(t, cfg)
	s.unloadAtCleanup()
	return s
}

// route is a route for paths matching path ("" for all) to handlers.
func route(path string, handlers ...any) map[string]any {
	r := map[string]any{"handle": handlers, "terminal": true}
	if path != "" {
		r["match"] = []any{map[string]any{"path": []string{path}}}
	}
	return r
}

// TestAccessRules: allow and deny rules on email, groups and claims give a
// signed-in user 403 (a page naming the account, or JSON), never a login;
// requests without a session still get the login or 401.
func TestAccessRules(t *testing.T) {
	op := testop.New(t, testop.Config{})
	keycloak := map[string]any{
		"realm_access":    map[string]any{"roles": []string{"offline_access", "auditor"}},
		"resource_access": map[string]any{"app": map[string]any{"roles": []string{"editor"}}, "other": map[string]any{"roles": []string{"admin"}}},
		"employee_id":     "E-1042",
	}
	users := map[string]testop.User{
		"alice":   {Subject: "alice-sub", Email: "alice@corp.example", EmailVerified: true, Groups: []string{"staff", "admins"}},
		"bob":     {Subject: "bob-sub", Email: "bob@corp.example", EmailVerified: true, Groups: []string{"staff", "superadmins"}},
		"carol":   {Subject: "carol-sub", Email: "carol@corp.example", EmailVerified: false, Groups: []string{"staff"}},
		"mallory": {Subject: "mallory-sub", Email: `<script>alert(1)</script>@corp.example`, EmailVerified: true, Groups: []string{"guests"}},
		"kc":      {Subject: "kc-sub", Email: "kc@partner.example", EmailVerified: true, Extra: keycloak},
		"kc2":     {Subject: "kc2-sub", Email: "kc2@partner.example", EmailVerified: true, Extra: map[string]any{"resource_access": map[string]any{"other": map[string]any{"roles": []string{"editor"}}}, "employee_id": "X-1"}},
	}
	for _, tc := range []struct {
		name    string
		auth    map[string]any
		allowed []string
		denied  []string
		reason  string // logged reason of the first denial
	}{
		{"groups", map[string]any{"allow": []any{map[string]any{"groups": []string{"admins"}}}},
			[]string{"alice"}, []string{"bob", "carol", "kc"}, "no allow rule matched"},
		{"email domain requires email_verified", map[string]any{"allow": []any{map[string]any{"email": []string{"*@corp.example"}}}},
			[]string{"alice", "bob"}, []string{"carol", "kc"}, "no allow rule matched"},
		{"allow_unverified_email", map[string]any{"allow": []any{map[string]any{"email": []string{"*@corp.example"}}}, "allow_unverified_email": true},
			[]string{"carol"}, []string{"kc"}, "no allow rule matched"},
		{"deny wins over allow", map[string]any{
			"allow": []any{map[string]any{"groups": []string{"staff"}}},
			"deny":  []any{map[string]any{"email": []string{"bob@corp.example"}}},
		}, []string{"alice", "carol"}, []string{"bob"}, "deny[0] matched"},
		{"nested Keycloak client roles", map[string]any{"allow": []any{map[string]any{"claims": map[string]any{"resource_access.app.roles": []string{"editor"}}}}},
			[]string{"kc"}, []string{"kc2", "alice"}, "no allow rule matched"},
		{"realm roles and regex, AND", map[string]any{"allow": []any{map[string]any{
			"claims":       map[string]any{"realm_access.roles": []string{"auditor"}},
			"claims_regex": map[string]any{"employee_id": []string{`E-[0-9]+`}},
		}}}, []string{"kc"}, []string{"kc2"}, "no allow rule matched"},
		{"regex is anchored", map[string]any{"allow": []any{map[string]any{"claims_regex": map[string]any{"employee_id": []string{`1042`}}}}},
			nil, []string{"kc"}, "no allow rule matched"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startSite(t, op, siteOptions{auth: tc.auth})
			for _, name := range tc.allowed {
				op.SetUser(users[name])
				b := newBrowser(t, s)
				s.login(t, b, "/")
				if r := b.navigate(s.base + "/page"); r.Status != http.StatusOK || r.Fields()["id"] != users[name].Subject {
					t.Errorf("%s: %s; want 200 for the user", name, r)
				}
			}
			s.newLogs()
			for i, name := range tc.denied {
				op.SetUser(users[name])
				b := newBrowser(t, s)
				// The login itself succeeds; the rules apply to every
				// request of the session.
				s.login(t, b, "/")
				r := b.navigate(s.base + "/page")
				expectStatus(t, r, http.StatusForbidden)
				if !strings.Contains(r.Body, "<strong>"+users[name].Email+"</strong>") || !strings.Contains(r.Body, `<form method="post" action="/oauth2/logout">`) {
					t.Errorf("%s: 403 page does not name the account or offer the logout: %s", name, r.Body)
				}
				if r.Header.Get("Location") != "" || r.SetCookie(s.sessionName()) != nil {
					t.Errorf("%s: denied navigation redirected or touched the session: %s", name, r)
				}
				r = b.fetch(s.base + "/api")
				expectStatus(t, r, http.StatusForbidden)
				var body map[string]any
				if err := json.Unmarshal([]byte(r.Body), &body); err != nil || body["user"] != users[name].Email || body["error"] != "Access denied" {
					t.Errorf("%s: 403 JSON %q", name, r.Body)
				}
				if i == 0 {
					found := false
					for _, e := range s.newLogs() {
						if e.str("msg") == "access denied" && e.str("user_id") == users[name].Subject && e.str("reason") == tc.reason {
							found = true
						}
					}
					if !found {
						t.Errorf("%s: no \"access denied\" log with reason %q", name, tc.reason)
					}
				}
			}
			// Without a session: login or 401 as usual, never 403.
			b := newBrowser(t, s)
			s.startLogin(t, b, "/page")
			expectStatus(t, b.fetch(s.base+"/api"), http.StatusUnauthorized)
		})
	}

	t.Run("the account name is escaped", func(t *testing.T) {
		s := startSite(t, op, siteOptions{auth: map[string]any{"allow": []any{map[string]any{"groups": []string{"admins"}}}}})
		op.SetUser(users["mallory"])
		b := newBrowser(t, s)
		s.login(t, b, "/")
		r := b.navigate(s.base + "/")
		expectStatus(t, r, http.StatusForbidden)
		if strings.Contains(r.Body, "<script>") || !strings.Contains(r.Body, "&lt;script&gt;alert(1)&lt;/script&gt;@corp.example") {
			t.Errorf("403 page does not escape the account name: %s", r.Body)
		}
		if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("403 page CSP %q", csp)
		}

		// Its sign-out button works: a same-origin POST to logout_path.
		r = b.do(http.MethodPost, s.base+"/oauth2/logout", withHeaders(navigationHeaders,
			"Origin", s.base, "Sec-Fetch-Site", "same-origin", "Content-Type", "application/x-www-form-urlencoded"), nil)
		expectStatus(t, r, http.StatusSeeOther)
		if b.cookie(s, s.sessionName()) != nil {
			t.Error("the 403 page's sign-out left the session")
		}
	})

	t.Run("handle_errors", func(t *testing.T) {
		s := startSite(t, op, siteOptions{handleErrors: true, auth: map[string]any{"allow": []any{map[string]any{"groups": []string{"admins"}}}}})
		op.SetUser(users["bob"])
		b := newBrowser(t, s)
		s.login(t, b, "/")
		r := b.navigate(s.base + "/")
		expectStatus(t, r, http.StatusForbidden)
		if r.Body != "handled 403" {
			t.Errorf("body %q, want the error route's", r.Body)
		}
	})
}

// TestStepUp: a route requiring acr and a recent login sends an older or
// weaker session back to the provider with acr_values and max_age (API
// requests get the RFC 9470 401). The callback, served here by the site's
// other handler, checks the ID token's acr and auth_time against what the
// login asked for.
func TestStepUp(t *testing.T) {
	op := testop.New(t, testop.Config{Now: testClock})
	admin := innerAuth(op, map[string]any{"require_acr": []string{"gold", "platinum"}, "max_age": "5m", "refresh": false})
	s := startRoutesSite(t, op,
		route("/admin/*", admin, echoHandler()),
		route("", innerAuth(op, map[string]any{"refresh": false}), echoHandler()))
	b := newBrowser(t, s)
	s.login(t, b, "/")
	expectStatus(t, b.navigate(s.base+"/home"), http.StatusOK)

	// The session has no acr: API calls get 401, navigations a login.
	r := b.fetch(s.base + "/admin/api")
	expectStatus(t, r, http.StatusUnauthorized)
	want := `Bearer error="insufficient_user_authentication", error_description="A stronger or more recent sign-in is required", acr_values="gold platinum", max_age="300"`
	if got := r.Header.Get("WWW-Authenticate"); got != want {
		t.Errorf("WWW-Authenticate %q, want %q", got, want)
	}
	ls := s.startLogin(t, b, "/admin/panel")
	if ls.params.Get("acr_values") != "gold platinum" || ls.params.Get("max_age") != "300" {
		t.Errorf("step-up authorization request %v, want acr_values and max_age", ls.params)
	}
	r = s.callback(b, s.authorize(t, b, ls))
	expectStatus(t, r, http.StatusSeeOther)
	if r.Location() != "/admin/panel" {
		t.Errorf("step-up login returned to %q", r.Location())
	}
	s.expectNoFailure(t)
	expectStatus(t, b.navigate(s.base+"/admin/panel"), http.StatusOK)
	expectStatus(t, b.fetch(s.base+"/admin/api"), http.StatusOK)

	// Past max_age (and the clock skew), the admin area asks again; the
	// rest of the site does not.
	advanceClock(t, 7*time.Minute)
	expectStatus(t, b.navigate(s.base+"/home"), http.StatusOK)
	expectStatus(t, b.fetch(s.base+"/admin/api"), http.StatusUnauthorized)
	ls = s.startLogin(t, b, "/admin/panel")
	expectStatus(t, s.callback(b, s.authorize(t, b, ls)), http.StatusSeeOther)
	expectStatus(t, b.fetch(s.base+"/admin/api"), http.StatusOK)

	// A provider that does not do what was asked is refused at the
	// callback, with no session made.
	for _, tc := range []struct {
		name   string
		mis    testop.Misbehaviour
		status int
		reason string
	}{
		{"weaker acr", testop.Misbehaviour{WeakACR: true}, http.StatusForbidden, `ID token acr "weak" is not one of the requested acr_values "gold platinum"`},
		{"old auth_time", testop.Misbehaviour{OldAuthTime: true}, http.StatusForbidden, "auth_time is 3600s old, more than the requested max_age 300s"},
		{"no auth_time", testop.Misbehaviour{OmitAuthTime: true}, http.StatusUnauthorized, "no auth_time although max_age was requested"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op.Misbehave(tc.mis)
			defer op.Misbehave(testop.Misbehaviour{})
			b := newBrowser(t, s)
			ls := s.startLogin(t, b, "/admin/")
			r := s.callback(b, s.authorize(t, b, ls))
			expectStatus(t, r, tc.status)
			s.expectFailureReason(t, tc.reason)
			s.expectNoSessionSet(t, b, r)
		})
	}

	// The requirements travel with the login: a login the site's own
	// handler starts asks for nothing, and a weak acr is fine there.
	op.Misbehave(testop.Misbehaviour{WeakACR: true, OmitAuthTime: true})
	defer op.Misbehave(testop.Misbehaviour{})
	b2 := newBrowser(t, s)
	ls = s.startLogin(t, b2, "/")
	if ls.params.Has("acr_values") || ls.params.Has("max_age") {
		t.Errorf("the site's own login asked for %v", ls.params)
	}
	expectStatus(t, s.callback(b2, s.authorize(t, b2, ls)), http.StatusSeeOther)
	s.expectNoFailure(t)
	expectStatus(t, b2.navigate(s.base+"/"), http.StatusOK)
	// ...and that session's weak acr is not enough for the admin area.
	expectStatus(t, b2.fetch(s.base+"/admin/x"), http.StatusUnauthorized)
}

// TestRulesAcrossHandlers: a session made by a login that did not keep the
// claims a route's rules read (here started by the site's other handler)
// is sent to the provider once more; that login keeps them.
func TestRulesAcrossHandlers(t *testing.T) {
	op := testop.New(t, testop.Config{})
	u := testop.DefaultUser()
	u.Extra = map[string]any{"realm_access": map[string]any{"roles": []string{"admin"}}}
	op.SetUser(u)
	admin := innerAuth(op, map[string]any{"allow": []any{map[string]any{"claims": map[string]any{"realm_access.roles": []string{"admin"}}}}})
	s := startRoutesSite(t, op, route("/admin/*", admin, echoHandler()), route("", innerAuth(op, nil), echoHandler()))

	b := newBrowser(t, s)
	s.login(t, b, "/")
	r := b.fetch(s.base + "/admin/api")
	expectStatus(t, r, http.StatusUnauthorized)
	if got := r.Header.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
		t.Errorf("WWW-Authenticate %q", got)
	}
	s.login(t, b, "/admin/")
	expectStatus(t, b.fetch(s.base+"/admin/api"), http.StatusOK)
	expectStatus(t, b.fetch(s.base+"/other"), http.StatusOK)

	// A user without the role: the login keeps the (empty) claim, so the
	// answer is 403, not another login.
	u.Subject, u.Extra = "bob-sub", map[string]any{"realm_access": map[string]any{"roles": []string{"user"}}}
	op.SetUser(u)
	bob := newBrowser(t, s)
	s.login(t, bob, "/admin/")
	expectStatus(t, bob.navigate(s.base+"/admin/"), http.StatusForbidden)
	u.Subject, u.Extra = "eve-sub", nil
	op.SetUser(u)
	eve := newBrowser(t, s)
	s.login(t, eve, "/admin/")
	expectStatus(t, eve.navigate(s.base+"/admin/"), http.StatusForbidden)
}

// TestPassUnauthenticated: requests without a session pass with empty
// placeholders and without the client's identity headers; with a session
// the identity is set. Claim headers join arrays and follow dotted paths.
func TestPassUnauthenticated(t *testing.T) {
	op := testop.New(t, testop.Config{})
	u := testop.DefaultUser()
	u.Extra = map[string]any{"realm_access": map[string]any{"roles": []string{"admin", "user"}}}
	op.SetUser(u)
	headers := map[string]any{"X-User": "email", "X-Groups": "groups", "X-Roles": "realm_access.roles"}
	echo := echoHandler()
	echo["body"] = echoBody + "\nx_roles={http.request.header.X-Roles}\nx_user_lookalike={http.request.header.X_User}\nanonymous={http.auth.user.id}|{http.auth.user.claims.anything}|"
	anonymous := map[string]any{"handler": "subroute", "routes": []any{
		map[string]any{
			"match":    []any{map[string]any{"expression": `{http.auth.user.id} == ""`}},
			"handle":   []any{echo},
			"terminal": true,
		},
		map[string]any{"handle": []any{map[string]any{"handler": "headers", "response": map[string]any{"set": map[string][]string{"X-Signed-In": {"yes"}}}}, echo}},
	}}
	s := startRoutesSite(t, op,
		route("/login", innerAuth(op, map[string]any{"headers": headers}), map[string]any{"handler": "static_response", "body": "signed in"}),
		route("", innerAuth(op, map[string]any{"pass_unauthenticated": true, "headers": headers}), anonymous))
	forged := []string{"X-User", "mallory@evil.example", "X_User", "mallory@evil.example", "X-Roles", "admin", "X-Groups", "admins"}

	b := newBrowser(t, s)
	for _, r := range []*reply{
		b.navigate(s.base+"/public", forged...),
		b.fetch(s.base+"/api", forged...),
		b.do(http.MethodPost, s.base+"/form", withHeaders(fetchHeaders, forged...), nil),
	} {
		expectStatus(t, r, http.StatusOK)
		expectNoSetCookie(t, r)
		if r.Header.Get("X-Signed-In") != "" {
			t.Errorf("%s: the expression matcher took the request for signed in", r.URL)
		}
		f := r.Fields()
		for _, k := range []string{"id", "email", "groups", "x_user", "x_groups", "x_roles", "x_user_lookalike"} {
			if f[k] != "" {
				t.Errorf("%s without a session: %s=%q, want empty", r.URL, k, f[k])
			}
		}
		if f["anonymous"] != "||" {
			t.Errorf("anonymous placeholders %q, want empty", f["anonymous"])
		}
	}
	// A stale or forged session cookie is no session either.
	b.setCookie(s, s.sessionName(), "forged")
	expectStatus(t, b.navigate(s.base+"/public"), http.StatusOK)
	if got := b.navigate(s.base + "/public").Fields()["cookie"]; got != "" {
		t.Errorf("upstream got the module's cookie %q", got)
	}

	// Sign in through /login (its handler starts the login; the callback
	// is served by the pass_unauthenticated handler).
	ls := s.startLogin(t, b, "/login")
	expectStatus(t, s.callback(b, s.authorize(t, b, ls)), http.StatusSeeOther)
	r := b.navigate(s.base+"/public", forged...)
	expectStatus(t, r, http.StatusOK)
	if r.Header.Get("X-Signed-In") != "yes" {
		t.Error("the expression matcher took the signed-in request for anonymous")
	}
	f := r.Fields()
	for k, want := range map[string]string{
		"id": "alice-sub", "email": "alice@example.com", "groups": "staff,admins",
		"x_user": "alice@example.com", "x_groups": "staff,admins", "x_roles": "admin,user", "x_user_lookalike": "",
	} {
		if f[k] != want {
			t.Errorf("with a session: %s=%q, want %q", k, f[k], want)
		}
	}
}

// TestGroupsExpressionMatcher runs the README's example of a route only
// for members of `admins`, as a Caddyfile: exact group names, so
// "superadmins" does not count.
func TestGroupsExpressionMatcher(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startCaddyfileSite(t, op, `
	pkce_auth {
		issuer        %[1]s
		client_id     %[2]s
		cookie_secure never
	}
	@admins expression `+"`"+`{http.auth.user.groups}.split(",").exists(g, g == "admins")`+"`"+`
	handle /admin/* {
		respond @admins "hello admin {http.auth.user.email}"
		respond "forbidden" 403
	}
	respond "hello {http.auth.user.email}"
`)
	for _, tc := range []struct {
		groups []string
		status int
		body   string
	}{
		{[]string{"staff", "admins"}, 200, "hello admin alice@example.com"},
		{[]string{"admins"}, 200, "hello admin alice@example.com"},
		{[]string{"superadmins", "admins-readonly", "staff"}, 403, "forbidden"},
		{nil, 403, "forbidden"},
	} {
		u := testop.DefaultUser()
		u.Groups = tc.groups
		op.SetUser(u)
		b := newBrowser(t, s)
		s.login(t, b, "/admin/")
		r := b.fetch(s.base + "/admin/x")
		if r.Status != tc.status || r.Body != tc.body {
			t.Errorf("groups %v: %d %q, want %d %q", tc.groups, r.Status, r.Body, tc.status, tc.body)
		}
		if r := b.fetch(s.base + "/"); r.Body != "hello alice@example.com" {
			t.Errorf("groups %v: outside /admin %q", tc.groups, r.Body)
		}
	}
}

// startCaddyfileSite loads a Caddyfile site whose body is siteBody, with
// the provider's issuer and client ID as %[1]s and %[2]s.
func startCaddyfileSite(t *testing.T, op *testop.Provider, siteBody string) *site {
	t.Helper()
	port := pickFreePort(t)
	config := caddyfileGlobals(t, t.TempDir(), "") + fmt.Sprintf(`
http://127.0.0.1:%d {
%s
}
`, port, fmt.Sprintf(siteBody, op.Issuer(), op.ClientID()))
	if msg := tryLoadCaddyfile(t, config); msg != "" {
		t.Fatalf("loading the Caddyfile: %s", msg)
	}
	t.Cleanup(func() { postCaddyConfig(t, map[string]any{}) })
	return &site{t: t, op: op, port: port, base: fmt.Sprintf("http://127.0.0.1:%d", port), logFile: t.TempDir() + "/none.log"}
}

// tryLoadCaddyfile loads a Caddyfile through the admin endpoint and returns
// the error Caddy answers, or "" when it loaded.
func tryLoadCaddyfile(t *testing.T, config string) string {
	t.Helper()
	loadCaddyJSON(t, map[string]any{}) // caddytest starts Caddy on its first use
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://localhost:%d/load", adminPort), strings.NewReader(config))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var sb strings.Builder
	_, _ = fmt.Fprint(&sb, resp.Status)
	if resp.StatusCode == http.StatusOK {
		return ""
	}
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf)
	return sb.String() + " " + string(buf[:n])
}
