package pkceauth

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

func TestIsNavigation(t *testing.T) {
	cases := []struct {
		name   string
		method string
		header map[string]string
		want   bool
	}{
		{"browser navigation", "GET", map[string]string{"Sec-Fetch-Mode": "navigate", "Accept": "text/html,*/*"}, true},
		{"navigation with odd Accept", "GET", map[string]string{"Sec-Fetch-Mode": "navigate", "Accept": "*/*"}, true},
		{"HEAD navigation", "HEAD", map[string]string{"Sec-Fetch-Mode": "navigate"}, true},
		{"old browser, HTML first", "GET", map[string]string{"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, true},
		{"old browser, HTML before JSON", "GET", map[string]string{"Accept": "text/html, application/json"}, true},
		{"fetch", "GET", map[string]string{"Sec-Fetch-Mode": "cors", "Accept": "text/html"}, false},
		{"no-cors fetch", "GET", map[string]string{"Sec-Fetch-Mode": "no-cors", "Accept": "text/html"}, false},
		{"same-origin fetch", "GET", map[string]string{"Sec-Fetch-Mode": "same-origin"}, false},
		{"websocket", "GET", map[string]string{"Sec-Fetch-Mode": "websocket", "Accept": "text/html"}, false},
		{"XHR header", "GET", map[string]string{"Sec-Fetch-Mode": "navigate", "X-Requested-With": "XMLHttpRequest"}, false},
		{"POST navigation", "POST", map[string]string{"Sec-Fetch-Mode": "navigate", "Accept": "text/html"}, false},
		{"PUT", "PUT", map[string]string{"Accept": "text/html"}, false},
		{"OPTIONS preflight", "OPTIONS", map[string]string{"Accept": "text/html"}, false},
		{"JSON first", "GET", map[string]string{"Accept": "application/json, text/html"}, false},
		{"problem+json first", "GET", map[string]string{"Accept": "application/problem+json, text/html"}, false},
		{"curl", "GET", map[string]string{"Accept": "*/*"}, false},
		{"no headers", "GET", nil, false},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, "http://app.example/x", nil)
		for k, v := range c.header {
			r.Header.Set(k, v)
		}
		if got := (&PKCEAuth{}).classify(r) == navigationRequest; got != c.want {
			t.Errorf("%s: isNavigation = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestCrossSite(t *testing.T) {
	cases := []struct {
		name   string
		tls    bool
		header map[string]string
		want   bool
	}{
		{"typed URL", false, map[string]string{"Sec-Fetch-Site": "none"}, false},
		{"same-origin link", false, map[string]string{"Sec-Fetch-Site": "same-origin"}, false},
		{"same-origin form", false, map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://app.example"}, false},
		{"same-origin form over TLS", true, map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "https://app.example"}, false},
		{"old browser GET", false, nil, false},
		{"old browser same Origin", false, map[string]string{"Origin": "http://app.example"}, false},
		{"cross-site link", false, map[string]string{"Sec-Fetch-Site": "cross-site"}, true},
		{"same-site (sibling subdomain)", false, map[string]string{"Sec-Fetch-Site": "same-site"}, true},
		{"unknown Sec-Fetch-Site", false, map[string]string{"Sec-Fetch-Site": "bogus"}, true},
		{"foreign Origin", false, map[string]string{"Origin": "https://evil.example"}, true},
		{"other port", false, map[string]string{"Origin": "http://app.example:8080"}, true},
		{"other scheme", true, map[string]string{"Origin": "http://app.example"}, true},
		{"opaque Origin", false, map[string]string{"Origin": "null"}, true},
		{"same-origin claim, foreign Origin", false, map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "https://evil.example"}, true},
	}
	for _, c := range cases {
		target := "http://app.example/oauth2/logout"
		if c.tls {
			target = "https://app.example/oauth2/logout"
		}
		r := httptest.NewRequest(http.MethodPost, target, nil)
		if c.tls {
			r.TLS = &tls.ConnectionState{}
		}
		for k, v := range c.header {
			r.Header.Set(k, v)
		}
		if got := crossSite(r, requestOrigin(r)); got != c.want {
			t.Errorf("%s: crossSite = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestWantsHTML(t *testing.T) {
	cases := []struct {
		header map[string]string
		want   bool
	}{
		{map[string]string{"Sec-Fetch-Mode": "navigate", "Accept": "application/json"}, true},
		{map[string]string{"Accept": "text/html"}, true},
		{map[string]string{}, true},
		{map[string]string{"Accept": "application/json"}, false},
		{map[string]string{"Accept": "*/*"}, false},
		{map[string]string{"Sec-Fetch-Mode": "cors", "Accept": "application/json, text/html"}, false},
	}
	for _, c := range cases {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		for k, v := range c.header {
			r.Header.Set(k, v)
		}
		if got := wantsHTML(r); got != c.want {
			t.Errorf("wantsHTML(%v) = %v, want %v", c.header, got, c.want)
		}
	}
}

// TestValidate: every bad setting is refused with a message naming the
// field, and the defaults pass.
func TestValidate(t *testing.T) {
	valid := func() *PKCEAuth {
		p := &PKCEAuth{Issuer: "https://idp.example/realms/main", ClientID: "app"}
		p.setDefaults()
		return p
	}
	if err := valid().Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	cases := []struct {
		name  string
		mod   func(*PKCEAuth)
		field string // the error names it
	}{
		{"no issuer", func(p *PKCEAuth) { p.Issuer = "" }, "issuer is required"},
		{"relative issuer", func(p *PKCEAuth) { p.Issuer = "idp.example" }, "issuer"},
		{"issuer with fragment", func(p *PKCEAuth) { p.Issuer = "https://idp.example/#x" }, "issuer"},
		{"ftp issuer", func(p *PKCEAuth) { p.Issuer = "ftp://idp.example" }, "issuer"},
		{"bad discovery_url", func(p *PKCEAuth) { p.DiscoveryURL = "/.well-known" }, "discovery_url"},
		{"bad authorization_endpoint", func(p *PKCEAuth) { p.AuthorizationEndpoint = "nope" }, "authorization_endpoint"},
		{"bad token_endpoint", func(p *PKCEAuth) { p.TokenEndpoint = "nope" }, "token_endpoint"},
		{"bad userinfo_endpoint", func(p *PKCEAuth) { p.UserinfoEndpoint = "nope" }, "userinfo_endpoint"},
		{"bad jwks_uri", func(p *PKCEAuth) { p.JWKSURI = "nope" }, "jwks_uri"},
		{"bad end_session_endpoint", func(p *PKCEAuth) { p.EndSessionEndpoint = "nope" }, "end_session_endpoint"},
		{"bad redirect_url", func(p *PKCEAuth) { p.RedirectURL = "/oauth2/callback" }, "redirect_url"},
		{"no client_id", func(p *PKCEAuth) { p.ClientID = "" }, "client_id is required"},
		{"basic without secret", func(p *PKCEAuth) { p.ClientAuthMethod = "basic" }, "client_auth_method basic needs a client_secret"},
		{"post without secret", func(p *PKCEAuth) { p.ClientAuthMethod = "post" }, "client_auth_method post needs a client_secret"},
		{"none with secret", func(p *PKCEAuth) { p.ClientSecret = "x" }, "client_auth_method none"},
		{"unknown auth method", func(p *PKCEAuth) { p.ClientAuthMethod = "private_key_jwt" }, "client_auth_method"},
		{"unknown response_mode", func(p *PKCEAuth) { p.ResponseMode = "fragment" }, "response_mode"},
		{"strict same_site loops", func(p *PKCEAuth) { p.CookieSameSite = "strict" }, "cookie_same_site strict"},
		{"none same_site without secure", func(p *PKCEAuth) { p.CookieSameSite = "none"; p.CookieSecure = "never" }, "cookie_same_site none"},
		{"form_post without Secure", func(p *PKCEAuth) { p.ResponseMode = "form_post"; p.CookieSecure = "never" }, "cookie_secure"},
		{"relative callback_path", func(p *PKCEAuth) { p.CallbackPath = "callback" }, "callback_path"},
		{"relative logout_path", func(p *PKCEAuth) { p.LogoutPath = "logout" }, "logout_path"},
		{"same callback and logout", func(p *PKCEAuth) { p.LogoutPath = p.CallbackPath }, "callback_path and logout_path"},
		{"absolute post_logout_redirect", func(p *PKCEAuth) { p.PostLogoutRedirect = "https://evil.example/" }, "post_logout_redirect"},
		{"scheme-relative post_logout_redirect", func(p *PKCEAuth) { p.PostLogoutRedirect = "//evil.example/" }, "post_logout_redirect"},
		{"negative session_lifetime", func(p *PKCEAuth) { p.SessionLifetime = -1 }, "session_lifetime"},
		{"negative login_timeout", func(p *PKCEAuth) { p.LoginTimeout = -1 }, "login_timeout"},
		{"max_pending_logins 0", func(p *PKCEAuth) { p.MaxPendingLogins = -1 }, "max_pending_logins"},
		{"max_pending_logins 21", func(p *PKCEAuth) { p.MaxPendingLogins = 21 }, "max_pending_logins"},
		{"cookie_name with ;", func(p *PKCEAuth) { p.CookieName = "a;b" }, "cookie_name"},
		{"cookie_name too long", func(p *PKCEAuth) { p.CookieName = strings.Repeat("a", 65) }, "cookie_name"},
		{"relative cookie_path", func(p *PKCEAuth) { p.CookiePath = "app" }, "cookie_path"},
		{"unknown cookie_same_site", func(p *PKCEAuth) { p.CookieSameSite = "relaxed" }, "cookie_same_site"},
		{"unknown cookie_secure", func(p *PKCEAuth) { p.CookieSecure = "sometimes" }, "cookie_secure"},
		{"HS256", func(p *PKCEAuth) { p.SigningAlgs = []string{"HS256"} }, "signing_algs: HS256"},
		{"alg none", func(p *PKCEAuth) { p.SigningAlgs = []string{"none"} }, "signing_algs: none"},
		{"unknown alg", func(p *PKCEAuth) { p.SigningAlgs = []string{"RS1"} }, "signing_algs"},
		{"unknown pkce_method", func(p *PKCEAuth) { p.PKCEMethod = "S512" }, "pkce_method"},
		{"negative timeout", func(p *PKCEAuth) { p.Timeout = -1 }, "timeout"},
		{"negative clock_skew", func(p *PKCEAuth) { p.ClockSkew = -1 }, "clock_skew"},
		{"bad header name", func(p *PKCEAuth) { p.Headers = map[string]string{"X User": "email"} }, "headers"},
		{"header without claim", func(p *PKCEAuth) { p.Headers = map[string]string{"X-User": ""} }, "headers: X-User"},
		{"forwarding state", func(p *PKCEAuth) { p.ForwardAuthParams = []string{"login_hint", "state"} }, "forward_auth_params: state"},
		{"overriding redirect_uri", func(p *PKCEAuth) { p.AuthParams = map[string]string{"redirect_uri": "https://evil.example"} }, "auth_params: redirect_uri"},
		{"overriding code_challenge_method", func(p *PKCEAuth) { p.AuthParams = map[string]string{"code_challenge_method": "plain"} }, "auth_params: code_challenge_method"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := valid()
			c.mod(p)
			err := p.Validate()
			if err == nil {
				t.Fatalf("Validate accepted it")
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Errorf("error %q does not name %q", err, c.field)
			}
		})
	}
}

// TestBadConfigRefusedByCaddy: Caddy refuses to load a bad config, with
// the field named in its answer, and keeps serving.
func TestBadConfigRefusedByCaddy(t *testing.T) {
	cases := map[string]struct {
		auth map[string]any
		want string
	}{
		"no issuer":      {map[string]any{"client_id": "app"}, "issuer is required"},
		"no client_id":   {map[string]any{"issuer": "https://idp.example"}, "client_id is required"},
		"short key":      {map[string]any{"issuer": "https://idp.example", "client_id": "app", "session_keys": []string{"short"}}, "session_keys[0]"},
		"HS256":          {map[string]any{"issuer": "https://idp.example", "client_id": "app", "signing_algs": []string{"HS256"}}, "signing_algs"},
		"unknown field":  {map[string]any{"issuer": "https://idp.example", "client_id": "app", "client_secrte": "x"}, "client_secrte"},
		"bad max logins": {map[string]any{"issuer": "https://idp.example", "client_id": "app", "max_pending_logins": 50}, "max_pending_logins"},
		"bad regex": {map[string]any{"issuer": "https://idp.example", "client_id": "app",
			"deny": []any{map[string]any{"claims_regex": map[string]any{"sub": []string{"(x"}}}}}, `deny[0]: claims_regex \"sub\": \"(x\" is not a valid regular expression`},
		"pass_unauthenticated with rules": {map[string]any{"issuer": "https://idp.example", "client_id": "app", "pass_unauthenticated": true,
			"allow": []any{map[string]any{"groups": []string{"a"}}}}, "pass_unauthenticated"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			auth := map[string]any{"handler": "pkce_auth", "session_keys": []string{testKeyA}}
			for k, v := range c.auth {
				auth[k] = v
			}
			cfg := map[string]any{"apps": map[string]any{"http": map[string]any{"servers": map[string]any{"srv0": map[string]any{
				"listen":          []string{"127.0.0.1:" + strconv.Itoa(pickFreePort(t))},
				"routes":          []any{map[string]any{"handle": []any{auth}}},
				"automatic_https": map[string]any{"disable": true},
			}}}}}
			msg := loadCaddyError(t, cfg)
			if msg == "" {
				t.Fatal("Caddy loaded the config")
			}
			if !strings.Contains(msg, c.want) {
				t.Errorf("load error %q does not name %q", msg, c.want)
			}
		})
	}
}

func TestOrigin(t *testing.T) {
	plain := httptest.NewRequest(http.MethodGet, "http://app.example:8080/x", nil)
	secure := httptest.NewRequest(http.MethodGet, "https://app.example/x", nil)
	secure.TLS = &tls.ConnectionState{}
	for _, c := range []struct {
		mode string
		r    *http.Request
		want string
	}{
		{"auto", plain, "http://app.example:8080"},
		{"never", plain, "http://app.example:8080"},
		{"always", plain, "https://app.example:8080"}, // behind a TLS-terminating proxy
		{"auto", secure, "https://app.example"},
		{"never", secure, "https://app.example"},
	} {
		p := &PKCEAuth{CookieSecure: c.mode}
		if got := p.origin(c.r); got != c.want {
			t.Errorf("cookie_secure %s, %s: origin %q, want %q", c.mode, c.r.URL, got, c.want)
		}
	}
}

// TestDeleteUnderscoreLookalikes: X_User must not reach an upstream that
// reads it as X-User (CGI, PHP), while unrelated underscore headers stay.
func TestDeleteUnderscoreLookalikes(t *testing.T) {
	p := &PKCEAuth{Headers: map[string]string{"X-User": "email"}, PassAccessToken: "X-Access-Token"}
	p.headerNames = sortedKeys(p.Headers)
	h := http.Header{
		"X_user":         {"forged"},
		"X_User":         {"forged"},
		"X_access_token": {"forged"},
		"X_other":        {"kept"},
		"X-User":         {"exact, deleted later by authenticate"},
	}
	p.deleteUnderscoreLookalikes(h)
	for _, k := range []string{"X_user", "X_User", "X_access_token"} {
		if _, ok := h[k]; ok {
			t.Errorf("%s survived", k)
		}
	}
	if h.Get("X_other") != "kept" || h.Get("X-User") == "" {
		t.Errorf("unrelated headers changed: %v", h)
	}
}
