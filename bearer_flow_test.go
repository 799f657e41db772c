package pkceauth

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddy-pkce/caddy-pkce/internal/testop"
)

// Integration tests of bearer mode: a real Caddy with pkce_auth in front
// of an upstream that echoes what it received, tokens signed by testop.

const testAPIAudience = "https://api.test"

// bearerEcho is the upstream of the bearer tests: identity placeholders
// and the headers that must (not) reach it.
var bearerEcho = []any{map[string]any{
	"handler":     "static_response",
	"status_code": 200,
	"body": strings.Join([]string{
		"id={http.auth.user.id}",
		"email={http.auth.user.email}",
		"groups={http.auth.user.groups}",
		"claim_client={http.auth.user.claims.client_id}",
		"x_user={http.request.header.X-User}",
		"authz={http.request.header.Authorization}",
		"x_access={http.request.header.X-Access-Token}",
	}, "\n"),
}}

func startBearerSite(t *testing.T, op *testop.Provider, bearer map[string]any, extra map[string]any) *site {
	t.Helper()
	auth := map[string]any{
		"bearer":  bearer,
		"headers": map[string]string{"X-User": "email"},
		"claims":  []string{"client_id"},
	}
	for k, v := range extra {
		auth[k] = v
	}
	return startSite(t, op, siteOptions{auth: auth, next: bearerEcho})
}

// apiToken is a valid access token for the test API, changed by edit.
func apiToken(op *testop.Provider, edit func(map[string]any)) string {
	c := op.AccessTokenClaims(testAPIAudience, "openid read write")
	if edit != nil {
		edit(c)
	}
	return op.SignToken(c, "at+jwt", testop.Genuine)
}

// callAPI is a script's request with the given Authorization values.
func callAPI(b *browser, target string, authorization ...string) *reply {
	b.t.Helper()
	h := fetchHeaders.Clone()
	for _, v := range authorization {
		h.Add("Authorization", v)
	}
	return b.do(http.MethodGet, target, h, nil)
}

// challenge parses a WWW-Authenticate: Bearer value into its parameters.
func challenge(t *testing.T, r *reply) map[string]string {
	t.Helper()
	v := r.Header.Get("WWW-Authenticate")
	rest, ok := strings.CutPrefix(v, "Bearer")
	if !ok {
		t.Fatalf("%s: WWW-Authenticate %q is not a Bearer challenge", r.URL, v)
	}
	params := map[string]string{}
	for p := range strings.SplitSeq(strings.TrimSpace(rest), ", ") {
		if p == "" {
			continue
		}
		k, val, ok := strings.Cut(p, "=")
		if !ok || len(val) < 2 || val[0] != '"' || val[len(val)-1] != '"' {
			t.Fatalf("%s: malformed challenge parameter %q in %q", r.URL, p, v)
		}
		params[k] = val[1 : len(val)-1]
	}
	return params
}

func TestBearerTokens(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startBearerSite(t, op, map[string]any{
		"audiences":       []string{"https://other.test", testAPIAudience},
		"required_scopes": []string{"read"},
	}, map[string]any{"pass_access_token": "X-Access-Token"})
	b := newBrowser(t, s)
	now := time.Now()
	valid := apiToken(op, nil)

	// tamper replaces the payload of a genuine token, keeping its signature.
	tamper := func(tok string, edit func(map[string]any)) string {
		parts := strings.Split(tok, ".")
		raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
		var c map[string]any
		_ = json.Unmarshal(raw, &c)
		edit(c)
		payload, _ := json.Marshal(c)
		return parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
	}
	signed := func(f testop.Forgery) string {
		return op.SignToken(op.AccessTokenClaims(testAPIAudience, "read"), "at+jwt", f)
	}

	cases := []struct {
		name    string
		auth    []string
		status  int
		code    string // error in the challenge; "" for none
		descHas string
	}{
		{"valid", []string{"Bearer " + valid}, 200, "", ""},
		{"lowercase scheme", []string{"bearer " + valid}, 200, "", ""},
		{"audience in a list", []string{"Bearer " + apiToken(op, func(c map[string]any) { c["aud"] = []string{"x", testAPIAudience} })}, 200, "", ""},
		{"scp array", []string{"Bearer " + apiToken(op, func(c map[string]any) { delete(c, "scope"); c["scp"] = []string{"read"} })}, 200, "", ""},
		{"expired within clock_skew", []string{"Bearer " + apiToken(op, func(c map[string]any) { c["exp"] = now.Add(-30 * time.Second).Unix() })}, 200, "", ""},
		{"expired", []string{"Bearer " + apiToken(op, func(c map[string]any) {
			c["exp"] = now.Add(-5 * time.Minute).Unix()
			c["iat"] = now.Add(-10 * time.Minute).Unix()
		})}, 401, "invalid_token", "expired"},
		{"no exp", []string{"Bearer " + apiToken(op, func(c map[string]any) { delete(c, "exp") })}, 401, "invalid_token", "no exp"},
		{"not yet valid", []string{"Bearer " + apiToken(op, func(c map[string]any) { c["nbf"] = now.Add(5 * time.Minute).Unix() })}, 401, "invalid_token", "not valid yet"},
		{"issued in the future", []string{"Bearer " + apiToken(op, func(c map[string]any) { c["iat"] = now.Add(5 * time.Minute).Unix() })}, 401, "invalid_token", "issued in the future"},
		{"wrong issuer", []string{"Bearer " + apiToken(op, func(c map[string]any) { c["iss"] = op.Issuer() + "/" })}, 401, "invalid_token", "another issuer"},
		{"wrong audience", []string{"Bearer " + apiToken(op, func(c map[string]any) { c["aud"] = "https://elsewhere.test" })}, 401, "invalid_token", "not meant for this resource"},
		{"no audience", []string{"Bearer " + apiToken(op, func(c map[string]any) { delete(c, "aud") })}, 401, "invalid_token", "not meant for this resource"},
		{"the site's own ID token", []string{"Bearer " + op.SignIDToken(op.IDTokenClaims(""))}, 401, "invalid_token", "not meant for this resource"},
		{"no sub", []string{"Bearer " + apiToken(op, func(c map[string]any) { delete(c, "sub") })}, 401, "invalid_token", "no sub"},
		{"missing scope", []string{"Bearer " + apiToken(op, func(c map[string]any) { c["scope"] = "write" })}, 403, "insufficient_scope", "lacks a required scope"},
		{"no scope at all", []string{"Bearer " + apiToken(op, func(c map[string]any) { delete(c, "scope") })}, 403, "insufficient_scope", ""},
		{"alg none", []string{"Bearer " + signed(testop.AlgNone)}, 401, "invalid_token", "accepted algorithm"},
		{"HS256 keyed with the public key", []string{"Bearer " + signed(testop.HS256PublicKey)}, 401, "invalid_token", "accepted algorithm"},
		{"unknown key", []string{"Bearer " + signed(testop.UnknownKey)}, 401, "invalid_token", "signature"},
		{"tampered payload", []string{"Bearer " + tamper(valid, func(c map[string]any) { c["sub"] = "mallory" })}, 401, "invalid_token", "signature"},
		{"tampered scope", []string{"Bearer " + tamper(apiToken(op, func(c map[string]any) { c["scope"] = "write" }), func(c map[string]any) { c["scope"] = "read" })}, 401, "invalid_token", "signature"},
		{"not a JWT", []string{"Bearer opaque-token-123"}, 401, "invalid_token", "not a JWT"},
		{"bearer without token", []string{"Bearer"}, 400, "invalid_request", "no token"},
		{"two Authorization headers", []string{"Bearer " + valid, "Bearer " + valid}, 400, "invalid_request", "more than one"},
		{"token with a comma", []string{"Bearer " + valid + ", Basic eA=="}, 400, "invalid_request", "characters"},
		{"oversize token", []string{"Bearer " + strings.Repeat("a", defaultMaxTokenSize+1)}, 401, "invalid_token", "larger than 16384 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := callAPI(b, s.base+"/api/things", c.auth...)
			if r.Status != c.status {
				t.Fatalf("%s; want %d", r, c.status)
			}
			expectNoSetCookie(t, r)
			if c.status == 200 {
				f := r.Fields()
				if f["id"] != "alice-sub" || f["email"] != "alice@example.com" || f["groups"] != "staff,admins" ||
					f["x_user"] != "alice@example.com" || f["claim_client"] != op.ClientID() {
					t.Errorf("identity from the token not passed on: %q", r.Body)
				}
				if f["authz"] != "" {
					t.Errorf("the Authorization header reached the upstream: %q", f["authz"])
				}
				token, _ := strings.CutPrefix(strings.TrimPrefix(c.auth[0], "bearer "), "Bearer ")
				if f["x_access"] != token {
					t.Errorf("pass_access_token X-Access-Token = %q, want the request's token", f["x_access"])
				}
				return
			}
			ch := challenge(t, r)
			if ch["error"] != c.code {
				t.Errorf("challenge error %q, want %q (WWW-Authenticate %q)", ch["error"], c.code, r.Header.Get("WWW-Authenticate"))
			}
			if !strings.Contains(ch["error_description"], c.descHas) {
				t.Errorf("error_description %q does not contain %q", ch["error_description"], c.descHas)
			}
			if ch["scope"] != "read" {
				t.Errorf("challenge scope %q, want the required scope read", ch["scope"])
			}
			if r.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("a refusal must not be cached: Cache-Control %q", r.Header.Get("Cache-Control"))
			}
		})
	}

	// A navigation with a token is judged by the token: never a redirect.
	r := b.do(http.MethodGet, s.base+"/page", withHeaders(navigationHeaders, "Authorization", "Bearer "+signed(testop.UnknownKey)), nil)
	expectStatus(t, r, http.StatusUnauthorized)
	r = b.do(http.MethodGet, s.base+"/page", withHeaders(navigationHeaders, "Authorization", "Bearer "+valid), nil)
	expectStatus(t, r, http.StatusOK)

	// Without a token the session flow is unchanged: a navigation is sent
	// to the login, a script gets 401 with a challenge without error.
	r = b.navigate(s.base + "/page")
	expectStatus(t, r, http.StatusFound)
	r = b.fetch(s.base + "/api/things")
	expectStatus(t, r, http.StatusUnauthorized)
	if ch := challenge(t, r); ch["error"] != "" || ch["scope"] != "read" {
		t.Errorf("no token: challenge %q, want no error and scope read", r.Header.Get("WWW-Authenticate"))
	}
	// Another scheme is not a bearer token: the session flow answers.
	r = callAPI(b, s.base+"/api/things", "Basic dXNlcjpwYXNz")
	expectStatus(t, r, http.StatusUnauthorized)
	if ch := challenge(t, r); ch["error"] != "" {
		t.Errorf("Basic credentials: challenge %q, want no error code", r.Header.Get("WWW-Authenticate"))
	}

	// The unknown-key tokens above fetched the keys again at most once
	// (the first valid token fetched them): forged kids cannot make Caddy
	// hammer the provider.
	if n := op.Counts().JWKS; n > 2 {
		t.Errorf("the provider's JWKS was fetched %d times, want at most 2", n)
	}
	for range 5 {
		callAPI(b, s.base+"/api/things", "Bearer "+signed(testop.UnknownKey))
	}
	if n := op.Counts().JWKS; n > 2 {
		t.Errorf("after 5 more unknown-kid tokens the JWKS was fetched %d times, want at most 2", n)
	}

	// No token, whole or in part, is ever logged (the log is at DEBUG).
	log, err := os.ReadFile(s.logFile)
	if err != nil {
		t.Fatal(err)
	}
	sig := valid[strings.LastIndexByte(valid, '.')+1:]
	if strings.Contains(string(log), sig) || strings.Contains(string(log), strings.Split(valid, ".")[1]) {
		t.Error("the Caddy log contains a bearer token")
	}
	if !strings.Contains(string(log), "bearer token rejected") {
		t.Error("rejected tokens are not logged (at debug level) with their reason")
	}
}

// TestBearerWithSession: a bearer token wins over a session cookie, both
// ways; a valid session without a token still works.
func TestBearerWithSession(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startBearerSite(t, op, map[string]any{"audiences": []string{testAPIAudience}},
		map[string]any{"api_match": []any{map[string]any{"path": []string{"/api/*"}}}})
	b := newBrowser(t, s)
	// api_match in a real config: a navigation there gets 401, not a login.
	r := b.navigate(s.base + "/api/report")
	expectStatus(t, r, http.StatusUnauthorized)
	expectNoSetCookie(t, r)
	s.login(t, b, "/")
	if r := b.fetch(s.base + "/api"); r.Status != 200 || r.Fields()["id"] != "alice-sub" {
		t.Fatalf("session without a token: %s", r)
	}
	r = callAPI(b, s.base+"/api", "Bearer "+apiToken(op, func(c map[string]any) { c["aud"] = "x" }))
	expectStatus(t, r, http.StatusUnauthorized)

	op.SetUser(testop.User{Subject: "bob-sub", Email: "bob@example.com"})
	r = callAPI(b, s.base+"/api", "Bearer "+apiToken(op, nil))
	expectStatus(t, r, http.StatusOK)
	if id := r.Fields()["id"]; id != "bob-sub" {
		t.Errorf("with a session for alice and a token for bob the request is %q, want the token's bob-sub", id)
	}
}

func TestBearerRequireATJWT(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startBearerSite(t, op, map[string]any{"audiences": []string{testAPIAudience}, "require_at_jwt": true}, nil)
	b := newBrowser(t, s)
	claims := op.AccessTokenClaims(testAPIAudience, "read")
	for _, c := range []struct {
		typ    string
		status int
	}{
		{"at+jwt", 200},
		{"application/at+jwt", 200},
		{"AT+JWT", 200},
		{"JWT", 401},
		{"", 401},
		{"at+jwt2", 401},
	} {
		r := callAPI(b, s.base+"/", "Bearer "+op.SignToken(claims, c.typ, testop.Genuine))
		if r.Status != c.status {
			t.Errorf("typ %q: %s; want %d", c.typ, r, c.status)
			continue
		}
		if c.status == 401 && !strings.Contains(challenge(t, r)["error_description"], "typ") {
			t.Errorf("typ %q: description %q does not name typ", c.typ, challenge(t, r)["error_description"])
		}
	}
}

// TestBearerOnly: no login, no cookies, 401 for everything without a valid
// token; RFC 9728 metadata at the origin's well-known URL.
func TestBearerOnly(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startBearerSite(t, op, map[string]any{
		"audiences":         []string{testAPIAudience},
		"only":              true,
		"required_scopes":   []string{"read"},
		"resource_metadata": map[string]any{},
	}, map[string]any{"client_id": nil})
	b := newBrowser(t, s)
	wantMeta := s.base + "/.well-known/oauth-protected-resource"

	for _, path := range []string{"/", "/oauth2/callback?state=x&code=y", "/oauth2/logout"} {
		r := b.navigate(s.base + path)
		expectStatus(t, r, http.StatusUnauthorized)
		expectNoSetCookie(t, r)
		ch := challenge(t, r)
		if ch["error"] != "" || ch["resource_metadata"] != wantMeta || ch["scope"] != "read" {
			t.Errorf("%s: challenge %q, want no error, scope and resource_metadata %s", path, r.Header.Get("WWW-Authenticate"), wantMeta)
		}
	}
	r := callAPI(b, s.base+"/data", "Bearer "+apiToken(op, nil))
	expectStatus(t, r, http.StatusOK)
	r = callAPI(b, s.base+"/data", "Bearer "+apiToken(op, func(c map[string]any) { c["scope"] = "write" }))
	expectStatus(t, r, http.StatusForbidden)
	if ch := challenge(t, r); ch["error"] != "insufficient_scope" || ch["resource_metadata"] != wantMeta {
		t.Errorf("insufficient scope: challenge %q", r.Header.Get("WWW-Authenticate"))
	}

	r = b.get(wantMeta)
	expectStatus(t, r, http.StatusOK)
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.Body), &doc); err != nil {
		t.Fatalf("metadata is not JSON: %v: %s", err, r.Body)
	}
	want := map[string]any{
		"resource":                 s.base,
		"authorization_servers":    []any{op.Issuer()},
		"bearer_methods_supported": []any{"header"},
		"scopes_supported":         []any{"read"},
	}
	gotJSON, _ := json.Marshal(doc)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("metadata %s, want %s", gotJSON, wantJSON)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("metadata Content-Type %q", ct)
	}
	r = b.do(http.MethodPost, wantMeta, nil, nil)
	expectStatus(t, r, http.StatusMethodNotAllowed)
}

// TestBearerResourceMetadataPath: a resource with a path is published at
// the well-known URL with the path inserted (RFC 9728 §3.1).
func TestBearerResourceMetadataPath(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startBearerSite(t, op, map[string]any{
		"audiences": []string{testAPIAudience},
		"resource_metadata": map[string]any{
			"resource":         "https://api.example.test/v1",
			"scopes_supported": []string{"read", "write"},
		},
	}, nil)
	b := newBrowser(t, s)
	r := b.get(s.base + "/.well-known/oauth-protected-resource/v1")
	expectStatus(t, r, http.StatusOK)
	var doc struct {
		Resource string   `json:"resource"`
		Scopes   []string `json:"scopes_supported"`
	}
	if err := json.Unmarshal([]byte(r.Body), &doc); err != nil || doc.Resource != "https://api.example.test/v1" || strings.Join(doc.Scopes, " ") != "read write" {
		t.Errorf("metadata %s (%v)", r.Body, err)
	}
	// The origin's own well-known URL is not this resource's.
	r = b.fetch(s.base + "/.well-known/oauth-protected-resource")
	expectStatus(t, r, http.StatusUnauthorized)
	if got := challenge(t, r)["resource_metadata"]; got != "https://api.example.test/.well-known/oauth-protected-resource/v1" {
		t.Errorf("resource_metadata %q", got)
	}
}

// TestBearerCache: a repeated token is not verified again (no key fetch,
// still accepted), and the cache never outlives the token.
func TestBearerCache(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startBearerSite(t, op, map[string]any{"audiences": []string{testAPIAudience}}, nil)
	b := newBrowser(t, s)
	tok := apiToken(op, nil)
	expectStatus(t, callAPI(b, s.base+"/", "Bearer "+tok), 200)
	// Withdraw the key: a cached token needs no key.
	op.RotateKeys()
	op.RotateKeys()
	expectStatus(t, callAPI(b, s.base+"/", "Bearer "+tok), 200)
	if n := op.Counts().JWKS; n != 1 {
		t.Errorf("JWKS fetched %d times, want 1", n)
	}
	advanceClock(t, op.AccessTokenTTL()+2*time.Minute)
	r := callAPI(b, s.base+"/", "Bearer "+tok)
	expectStatus(t, r, http.StatusUnauthorized)
	if d := challenge(t, r)["error_description"]; !strings.Contains(d, "expired") {
		t.Errorf("cached token after exp: %q, want expired", d)
	}
}

// TestBearerKeyRotation: a token signed with a key published after the
// keys were fetched is accepted once the set is fetched again.
func TestBearerKeyRotation(t *testing.T) {
	old := jwksRefetchInterval
	jwksRefetchInterval = 0
	t.Cleanup(func() { jwksRefetchInterval = old })
	op := testop.New(t, testop.Config{})
	s := startBearerSite(t, op, map[string]any{"audiences": []string{testAPIAudience}}, nil)
	b := newBrowser(t, s)
	expectStatus(t, callAPI(b, s.base+"/", "Bearer "+apiToken(op, nil)), 200)
	op.RotateKeys()
	expectStatus(t, callAPI(b, s.base+"/", "Bearer "+apiToken(op, nil)), 200)
	if n := op.Counts().JWKS; n != 2 {
		t.Errorf("JWKS fetched %d times, want 2 (once more for the new kid)", n)
	}
}

// TestBearerProviderDown: without the provider's keys a token cannot be
// checked: 503, never a pass.
func TestBearerProviderDown(t *testing.T) {
	op := testop.New(t, testop.Config{})
	op.Misbehave(testop.Misbehaviour{DiscoveryDown: true})
	s := startBearerSite(t, op, map[string]any{"audiences": []string{testAPIAudience}}, nil)
	b := newBrowser(t, s)
	r := callAPI(b, s.base+"/", "Bearer "+apiToken(op, nil))
	expectStatus(t, r, http.StatusServiceUnavailable)
	if r.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}

// TestBearerHandleErrors: with handle_errors routes the refusal goes to
// them, and the RFC 6750 challenge survives.
func TestBearerHandleErrors(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startSite(t, op, siteOptions{
		auth:         map[string]any{"bearer": map[string]any{"audiences": []string{testAPIAudience}, "only": true}},
		handleErrors: true,
		next:         bearerEcho,
	})
	b := newBrowser(t, s)
	r := callAPI(b, s.base+"/", "Bearer "+apiToken(op, func(c map[string]any) { c["aud"] = "x" }))
	expectStatus(t, r, http.StatusUnauthorized)
	if r.Body != "handled 401" {
		t.Errorf("body %q, want the handle_errors route's", r.Body)
	}
	if ch := challenge(t, r); ch["error"] != "invalid_token" {
		t.Errorf("challenge %q lost under handle_errors", r.Header.Get("WWW-Authenticate"))
	}
	r = callAPI(b, s.base+"/", "Bearer "+apiToken(op, nil))
	expectStatus(t, r, http.StatusOK)
}

// TestBearerTokenFromLogin: the access token the provider's token endpoint
// issued at a real login (RFC 9068, audience the client) is accepted as a
// bearer token by itself, while the ID token of the same login, signed
// with the same key for the same audience, is refused by require_at_jwt.
func TestBearerTokenFromLogin(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startBearerSite(t, op, map[string]any{
		"audiences":       []string{op.ClientID()},
		"require_at_jwt":  true,
		"required_scopes": []string{"email"},
	}, map[string]any{"pass_access_token": "X-Access-Token"})
	browserWithSession := newBrowser(t, s)
	s.login(t, browserWithSession, "/")
	r := browserWithSession.fetch(s.base + "/whoami")
	expectStatus(t, r, http.StatusOK)
	accessToken := r.Fields()["x_access"]
	if strings.Count(accessToken, ".") != 2 {
		t.Fatalf("the session passed no JWT access token upstream: %q", accessToken)
	}

	api := newBrowser(t, s) // no cookies
	r = callAPI(api, s.base+"/whoami", "Bearer "+accessToken)
	expectStatus(t, r, http.StatusOK)
	if id := r.Fields()["id"]; id != "alice-sub" {
		t.Errorf("token from the login: id %q, want alice-sub", id)
	}

	idToken := op.SignIDToken(op.IDTokenClaims(""))
	r = callAPI(api, s.base+"/whoami", "Bearer "+idToken)
	expectStatus(t, r, http.StatusUnauthorized)
	if d := challenge(t, r)["error_description"]; !strings.Contains(d, "typ") {
		t.Errorf("ID token as bearer: %q, want a typ refusal", d)
	}
}

// TestBearerClientAudienceWarning: accepting the client_id as audience
// without require_at_jwt lets ID tokens in as access tokens; Caddy says so
// at start.
func TestBearerClientAudienceWarning(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startBearerSite(t, op, map[string]any{"audiences": []string{op.ClientID()}}, nil)
	warned := false
	for _, e := range s.newLogs() {
		if e.str("level") == "warn" && strings.Contains(e.str("msg"), "ID tokens issued to this client are accepted as access tokens") {
			warned = true
		}
	}
	if !warned {
		t.Error("no warning about ID tokens passing as access tokens")
	}
	// And indeed they pass: the warning is not a false alarm.
	r := callAPI(newBrowser(t, s), s.base+"/", "Bearer "+op.SignIDToken(op.IDTokenClaims("")))
	expectStatus(t, r, http.StatusOK)
}

// TestBearerRules: the route's rules and step-up requirements apply to a
// token's claims as to a session's: refused by the rules → 403, a login
// weaker or older than required → 401 with the RFC 9470 challenge.
func TestBearerRules(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startBearerSite(t, op, map[string]any{"audiences": []string{testAPIAudience}}, map[string]any{
		"allow":       []any{map[string]any{"groups": []string{"admins"}}, map[string]any{"claims": map[string]any{"realm_access.roles": []string{"api"}}}},
		"deny":        []any{map[string]any{"claims": map[string]any{"blocked": []string{"true"}}}},
		"require_acr": []string{"gold"},
		"max_age":     "1h",
	})
	b := newBrowser(t, s)
	fresh := func(c map[string]any) { c["acr"] = "gold"; c["auth_time"] = now().Unix() }
	for _, c := range []struct {
		name string
		edit func(map[string]any)
		want int
		code string
	}{
		{"admin", func(c map[string]any) { fresh(c) }, 200, ""},
		{"nested role instead of group", func(c map[string]any) {
			fresh(c)
			c["groups"] = []any{"staff"}
			c["realm_access"] = map[string]any{"roles": []any{"api"}}
		}, 200, ""},
		{"neither group nor role", func(c map[string]any) { fresh(c); c["groups"] = []any{"staff"} }, 403, ""},
		{"deny wins", func(c map[string]any) { fresh(c); c["blocked"] = true }, 403, ""},
		{"weaker acr", func(c map[string]any) { fresh(c); c["acr"] = "silver" }, 401, "insufficient_user_authentication"},
		{"no acr", func(c map[string]any) { fresh(c); delete(c, "acr") }, 401, "insufficient_user_authentication"},
		{"login too old", func(c map[string]any) { fresh(c); c["auth_time"] = now().Add(-2 * time.Hour).Unix() }, 401, "insufficient_user_authentication"},
		// 1e300 would overflow int64 and pass every later age check.
		{"auth_time out of range", func(c map[string]any) { fresh(c); c["auth_time"] = 1e300 }, 401, "invalid_token"},
		{"auth_time in the future", func(c map[string]any) { fresh(c); c["auth_time"] = now().Add(time.Hour).Unix() }, 401, "invalid_token"},
	} {
		r := callAPI(b, s.base+"/", "Bearer "+apiToken(op, c.edit))
		if r.Status != c.want {
			t.Errorf("%s: %s; want %d", c.name, r, c.want)
			continue
		}
		if c.code == "invalid_token" {
			if ch := challenge(t, r); ch["error"] != c.code {
				t.Errorf("%s: challenge %v, want error=%s", c.name, ch, c.code)
			}
		} else if c.code != "" {
			if ch := challenge(t, r); ch["error"] != c.code || ch["acr_values"] != "gold" || ch["max_age"] != "3600" {
				t.Errorf("%s: challenge %v, want error=%s acr_values=gold max_age=3600", c.name, ch, c.code)
			}
		}
	}
}
