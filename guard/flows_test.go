package pkceguard

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// env is a pkce_guard in front of a legacy server, reachable at base. The
// flows below run against two of them: the handler alone (guard_test.go)
// and Caddy with reverse_proxy (caddy_test.go).
type env struct {
	base   string
	legacy *legacyServer
}

// browser is a user agent with its own cookies that does not follow
// redirects, so tests see each one.
type browser struct {
	t      *testing.T
	e      *env
	client *http.Client
}

func newBrowser(t *testing.T, e *env) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, e: e, client: &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (b *browser) do(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func (b *browser) get(path string, q url.Values) (*http.Response, string) {
	b.t.Helper()
	u := b.e.base + path
	if q != nil {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

func (b *browser) postForm(path string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.e.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var loginRE = regexp.MustCompile(`name="login" value="([^"]+)"`)

// signIn submits the legacy server's login page.
func (b *browser) signIn(page string) *http.Response {
	b.t.Helper()
	m := loginRE.FindStringSubmatch(page)
	if m == nil {
		b.t.Fatalf("not a login page: %q", page)
	}
	resp, _ := b.postForm("/login", url.Values{"login": {m[1]}, "username": {legacyUser}, "password": {legacyPass}})
	return resp
}

// codeFlow sends an authorization request, signs in if asked, and returns
// the redirect to the client, which must carry a code.
func (b *browser) codeFlow(q url.Values) *url.URL {
	b.t.Helper()
	resp, body := b.authorize(q)
	if resp.StatusCode == http.StatusOK {
		resp = b.signIn(body)
	}
	loc := location(b.t, resp, http.StatusFound)
	if codeOf(loc) == "" {
		b.t.Fatalf("the redirect to the client has no code: %s", loc)
	}
	return loc
}

func (b *browser) authorize(q url.Values) (*http.Response, string) {
	b.t.Helper()
	return b.get("/authorize", q)
}

// location returns the Location of resp, which must have status.
func location(t *testing.T, resp *http.Response, status int) *url.URL {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("got status %d, want %d (Location %q)", resp.StatusCode, status, resp.Header.Get("Location"))
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.Header.Get("Location") == "" {
		t.Fatalf("bad Location %q: %v", resp.Header.Get("Location"), err)
	}
	return u
}

// codeOf returns the code in a redirect, from the query or the fragment.
func codeOf(u *url.URL) string {
	if c := u.Query().Get("code"); c != "" {
		return c
	}
	f, _ := url.ParseQuery(u.Fragment)
	return f.Get("code")
}

// authParams builds an authorization request; pkce is challenge[, method].
func authParams(clientID, redirectURI, state string, pkce ...string) url.Values {
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "scope": {"openid"}}
	if redirectURI != "" {
		q.Set("redirect_uri", redirectURI)
	}
	if state != "" {
		q.Set("state", state)
	}
	if len(pkce) > 0 {
		q.Set("code_challenge", pkce[0])
	}
	if len(pkce) > 1 {
		q.Set("code_challenge_method", pkce[1])
	}
	return q
}

// s256Params is a PKCE S256 authorization request with a new verifier.
func s256Params(clientID, redirectURI, state string) (url.Values, string) {
	v := oauth2.GenerateVerifier()
	return authParams(clientID, redirectURI, state, oauth2.S256ChallengeFromVerifier(v), "S256"), v
}

// tokenResult is a token endpoint's answer.
type tokenResult struct {
	status int
	header http.Header
	body   map[string]any
}

// token sends a token request with the form, and HTTP Basic credentials
// when basic holds a user and a password.
func (e *env) token(t *testing.T, form url.Values, basic ...string) tokenResult {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.base+"/oauth/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(url.QueryEscape(basic[0]), url.QueryEscape(basic[1]))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	res := tokenResult{status: resp.StatusCode, header: resp.Header}
	if err := json.NewDecoder(resp.Body).Decode(&res.body); err != nil {
		t.Fatalf("token response is not JSON (status %d): %v", resp.StatusCode, err)
	}
	return res
}

// codeForm is the token request for code.
func codeForm(clientID, redirectURI, code, verifier string) url.Values {
	f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {clientID}}
	if redirectURI != "" {
		f.Set("redirect_uri", redirectURI)
	}
	if verifier != "" {
		f.Set("code_verifier", verifier)
	}
	return f
}

// wantTokens checks a successful token response from the legacy server.
func wantTokens(t *testing.T, res tokenResult) {
	t.Helper()
	if res.status != http.StatusOK || !strings.HasPrefix(toString(res.body["access_token"]), "at-") {
		t.Fatalf("want tokens, got %d %v", res.status, res.body)
	}
}

// wantTokenError checks an RFC 6749 §5.2 error answered by the guard.
func wantTokenError(t *testing.T, res tokenResult, code, descPart string) {
	t.Helper()
	if res.status != http.StatusBadRequest || res.body["error"] != code {
		t.Fatalf("want 400 %s, got %d %v", code, res.status, res.body)
	}
	if d := toString(res.body["error_description"]); !strings.Contains(d, descPart) {
		t.Errorf("error_description %q does not mention %q", d, descPart)
	}
	if res.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store (RFC 6749 section 5.1)", res.header.Get("Cache-Control"))
	}
	if !strings.HasPrefix(res.header.Get("Content-Type"), "application/json") {
		t.Errorf("Content-Type = %q, want application/json", res.header.Get("Content-Type"))
	}
}

// wantErrorRedirect checks an RFC 6749 §4.1.2.1 error redirect to cb.
func wantErrorRedirect(t *testing.T, resp *http.Response, cb, state, descPart string) {
	t.Helper()
	loc := location(t, resp, http.StatusFound)
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != cb {
		t.Fatalf("error redirect to %q, want %q", got, cb)
	}
	q := loc.Query()
	if q.Get("error") != "invalid_request" || q.Get("state") != state || !strings.Contains(q.Get("error_description"), descPart) {
		t.Errorf("error redirect query = %v, want error=invalid_request, state=%q, a description mentioning %q", q, state, descPart)
	}
	if q.Has("code") {
		t.Errorf("error redirect carries a code: %s", loc)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", resp.Header.Get("Cache-Control"))
	}
}

// wantErrorPage checks a 400 page that redirects nowhere.
func wantErrorPage(t *testing.T, resp *http.Response, body, descPart string) {
	t.Helper()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Fatalf("want a 400 page, got %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, descPart) {
		t.Errorf("error page (%s) does not mention %q: %s", resp.Header.Get("Content-Type"), descPart, body)
	}
}

// unchanged fails when the legacy server saw a request to path since the
// count before.
func unchanged(t *testing.T, e *env, path string, before int) {
	t.Helper()
	if n := e.legacy.count(path); n != before {
		t.Errorf("the upstream server saw %d request(s) to %s; the guard should have stopped it", n-before, path)
	}
}

func toString(v any) string {
	s, _ := v.(string)
	return s
}

// runFlows checks the guard's behaviour, as the issue lists it, against a
// guard configured with:
//
//	exempt_clients exempt-app
//	redirect_uris public-app https://app.example/cb
//	redirect_uris conf-app https://conf.example/cb
//	redirect_uris native-app com.example.app:/oauth2redirect
//
// and default paths.
func runFlows(t *testing.T, e *env) {
	t.Run("authorization without code_challenge, trusted redirect_uri: error redirect", func(t *testing.T) {
		b := newBrowser(t, e)
		before := e.legacy.count("/authorize")
		resp, _ := b.authorize(authParams(publicApp, publicAppCB, "st-1"))
		wantErrorRedirect(t, resp, publicAppCB, "st-1", "code_challenge is required")
		unchanged(t, e, "/authorize", before)
	})
	t.Run("authorization without code_challenge, untrusted redirect_uri: 400 page", func(t *testing.T) {
		b := newBrowser(t, e)
		before := e.legacy.count("/authorize")
		resp, body := b.authorize(authParams(otherApp, otherAppCB, "st-1"))
		wantErrorPage(t, resp, body, "code_challenge is required")
		unchanged(t, e, "/authorize", before)
	})
	t.Run("authorization with a trusted client but an unlisted redirect_uri: 400 page", func(t *testing.T) {
		b := newBrowser(t, e)
		resp, body := b.authorize(authParams(publicApp, "https://evil.example/cb", "st-1"))
		wantErrorPage(t, resp, body, "code_challenge is required")
	})
	t.Run("plain: refused", func(t *testing.T) {
		b := newBrowser(t, e)
		before := e.legacy.count("/authorize")
		v := oauth2.GenerateVerifier()
		resp, _ := b.authorize(authParams(publicApp, publicAppCB, "st-2", v, "plain"))
		wantErrorRedirect(t, resp, publicAppCB, "st-2", "code_challenge_method is not allowed")
		resp, _ = b.authorize(authParams(publicApp, publicAppCB, "st-3", v))
		wantErrorRedirect(t, resp, publicAppCB, "st-3", "which means plain")
		unchanged(t, e, "/authorize", before)
	})
	t.Run("malformed challenges: refused", func(t *testing.T) {
		good := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
		for name, ch := range map[string]string{
			"42 characters":          good[:42],
			"44 characters":          good + "A",
			"base64 with +":          "+" + good[1:],
			"padding":                good[:42] + "=",
			"non-zero trailing bits": good[:42] + "B", // 258 bits: the last 2 must be 0
		} {
			t.Run(name, func(t *testing.T) {
				b := newBrowser(t, e)
				before := e.legacy.count("/authorize")
				resp, _ := b.authorize(authParams(publicApp, publicAppCB, "st-4", ch, "S256"))
				wantErrorRedirect(t, resp, publicAppCB, "st-4", "43 base64url characters")
				unchanged(t, e, "/authorize", before)
			})
		}
	})
	t.Run("correct S256 client gets tokens; the upstream sees the request unchanged", func(t *testing.T) {
		b := newBrowser(t, e)
		q, v := s256Params(publicApp, publicAppCB, "st-5")
		auths, tokens := e.legacy.count("/authorize"), e.legacy.count("/oauth/token")
		loc := b.codeFlow(q)
		if loc.Query().Get("state") != "st-5" {
			t.Errorf("state not passed back: %s", loc)
		}
		if e.legacy.count("/authorize") != auths+1 {
			t.Fatal("the upstream did not see the authorization request")
		}
		if seen, _ := e.legacy.last("/authorize"); seen.params.Get("code_challenge") != q.Get("code_challenge") {
			t.Errorf("the upstream saw code_challenge %q, want it passed unchanged", seen.params.Get("code_challenge"))
		}
		wantTokens(t, e.token(t, codeForm(publicApp, publicAppCB, codeOf(loc), v)))
		if e.legacy.count("/oauth/token") != tokens+1 {
			t.Error("the upstream did not see the token request")
		}
	})
	t.Run("missing code_verifier: invalid_grant", func(t *testing.T) {
		b := newBrowser(t, e)
		q, _ := s256Params(publicApp, publicAppCB, "st-6")
		code := codeOf(b.codeFlow(q))
		before := e.legacy.count("/oauth/token")
		wantTokenError(t, e.token(t, codeForm(publicApp, publicAppCB, code, "")), "invalid_grant", "code_verifier is required")
		unchanged(t, e, "/oauth/token", before)
	})
	t.Run("wrong code_verifier: invalid_grant, and the binding is used up", func(t *testing.T) {
		b := newBrowser(t, e)
		q, v := s256Params(publicApp, publicAppCB, "st-7")
		code := codeOf(b.codeFlow(q))
		before := e.legacy.count("/oauth/token")
		wantTokenError(t, e.token(t, codeForm(publicApp, publicAppCB, code, oauth2.GenerateVerifier())), "invalid_grant", "does not match")
		wantTokenError(t, e.token(t, codeForm(publicApp, publicAppCB, code, v)), "invalid_grant", "already used")
		unchanged(t, e, "/oauth/token", before)
	})
	t.Run("malformed code_verifier: invalid_grant", func(t *testing.T) {
		b := newBrowser(t, e)
		q, v := s256Params(publicApp, publicAppCB, "st-7b")
		code := codeOf(b.codeFlow(q))
		before := e.legacy.count("/oauth/token")
		wantTokenError(t, e.token(t, codeForm(publicApp, publicAppCB, code, v[:42])), "invalid_grant", "43 to 128")
		unchanged(t, e, "/oauth/token", before)
	})
	t.Run("verifier of another code: invalid_grant", func(t *testing.T) {
		b := newBrowser(t, e)
		qa, _ := s256Params(publicApp, publicAppCB, "st-8a")
		qb, vb := s256Params(publicApp, publicAppCB, "st-8b")
		codeA := codeOf(b.codeFlow(qa))
		codeB := codeOf(b.codeFlow(qb))
		before := e.legacy.count("/oauth/token")
		wantTokenError(t, e.token(t, codeForm(publicApp, publicAppCB, codeA, vb)), "invalid_grant", "does not match")
		unchanged(t, e, "/oauth/token", before)
		wantTokens(t, e.token(t, codeForm(publicApp, publicAppCB, codeB, vb)))
	})
	t.Run("replayed code: invalid_grant without contacting the upstream", func(t *testing.T) {
		b := newBrowser(t, e)
		q, v := s256Params(publicApp, publicAppCB, "st-9")
		code := codeOf(b.codeFlow(q))
		wantTokens(t, e.token(t, codeForm(publicApp, publicAppCB, code, v)))
		before := e.legacy.count("/oauth/token")
		wantTokenError(t, e.token(t, codeForm(publicApp, publicAppCB, code, v)), "invalid_grant", "already used")
		unchanged(t, e, "/oauth/token", before)
	})
	t.Run("code of another client: invalid_grant", func(t *testing.T) {
		b := newBrowser(t, e)
		q, v := s256Params(publicApp, publicAppCB, "st-10")
		code := codeOf(b.codeFlow(q))
		before := e.legacy.count("/oauth/token")
		wantTokenError(t, e.token(t, codeForm(otherApp, otherAppCB, code, v)), "invalid_grant", "another client")
		unchanged(t, e, "/oauth/token", before)
	})
	t.Run("redirect_uri different from the authorization request: invalid_grant", func(t *testing.T) {
		b := newBrowser(t, e)
		q, v := s256Params(publicApp, publicAppCB, "st-11")
		code := codeOf(b.codeFlow(q))
		before := e.legacy.count("/oauth/token")
		wantTokenError(t, e.token(t, codeForm(publicApp, publicAppCB+"/x", code, v)), "invalid_grant", "redirect_uri")
		unchanged(t, e, "/oauth/token", before)
	})
	t.Run("exempt client without PKCE gets tokens", func(t *testing.T) {
		b := newBrowser(t, e)
		auths, tokens := e.legacy.count("/authorize"), e.legacy.count("/oauth/token")
		code := codeOf(b.codeFlow(authParams(exemptApp, exemptAppCB, "st-12")))
		wantTokens(t, e.token(t, codeForm(exemptApp, exemptAppCB, code, "")))
		if e.legacy.count("/authorize") != auths+1 || e.legacy.count("/oauth/token") != tokens+1 {
			t.Error("the upstream did not see the exempt client's requests")
		}
	})
	t.Run("exempt client that sends a challenge is held to it", func(t *testing.T) {
		b := newBrowser(t, e)
		q, _ := s256Params(exemptApp, exemptAppCB, "st-13")
		code := codeOf(b.codeFlow(q))
		wantTokenError(t, e.token(t, codeForm(exemptApp, exemptAppCB, code, "")), "invalid_grant", "code_verifier is required")
	})
	t.Run("intercepted code on a native app's custom scheme is useless without the verifier", func(t *testing.T) {
		// A malicious app registered com.example.app too and receives
		// the redirect: it has the code, not the verifier.
		b := newBrowser(t, e)
		q, v := s256Params(nativeApp, nativeAppCB, "st-14")
		loc := b.codeFlow(q)
		if !strings.HasPrefix(loc.String(), nativeAppCB+"?") {
			t.Fatalf("redirect to %s, want the native app's URI", loc)
		}
		code := codeOf(loc)
		before := e.legacy.count("/oauth/token")
		wantTokenError(t, e.token(t, codeForm(nativeApp, nativeAppCB, code, oauth2.GenerateVerifier())), "invalid_grant", "does not match")
		wantTokenError(t, e.token(t, codeForm(nativeApp, nativeAppCB, code, "")), "invalid_grant", "already used")
		unchanged(t, e, "/oauth/token", before)

		// The genuine app, in a new flow, gets its tokens.
		q, v = s256Params(nativeApp, nativeAppCB, "st-14b")
		wantTokens(t, e.token(t, codeForm(nativeApp, nativeAppCB, codeOf(b.codeFlow(q)), v)))
	})
	t.Run("confidential client with Basic credentials and PKCE gets tokens", func(t *testing.T) {
		b := newBrowser(t, e)
		q, v := s256Params(confApp, confAppCB, "st-15")
		code := codeOf(b.codeFlow(q))
		form := codeForm(confApp, confAppCB, code, v)
		form.Del("client_id")
		wantTokens(t, e.token(t, form, confApp, confAppSecret))
	})
	t.Run("confidential client without PKCE: refused", func(t *testing.T) {
		b := newBrowser(t, e)
		resp, _ := b.authorize(authParams(confApp, confAppCB, "st-16"))
		wantErrorRedirect(t, resp, confAppCB, "st-16", "code_challenge is required")
	})
	t.Run("POST authorization request", func(t *testing.T) {
		b := newBrowser(t, e)
		q, v := s256Params(publicApp, publicAppCB, "st-17")
		resp, body := b.postForm("/authorize", q)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST authorization request: %d", resp.StatusCode)
		}
		code := codeOf(location(t, b.signIn(body), http.StatusFound))
		wantTokens(t, e.token(t, codeForm(publicApp, publicAppCB, code, v)))

		resp, _ = b.postForm("/authorize", authParams(publicApp, publicAppCB, "st-17b"))
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("refused POST authorization request: status %d, want 303", resp.StatusCode)
		}
	})
	t.Run("code issued on the authorization request itself (live session)", func(t *testing.T) {
		b := newBrowser(t, e)
		q, _ := s256Params(publicApp, publicAppCB, "st-18a")
		b.codeFlow(q) // signs in
		q, v := s256Params(publicApp, publicAppCB, "st-18b")
		resp, _ := b.authorize(q)
		loc := location(t, resp, http.StatusFound)
		wantTokens(t, e.token(t, codeForm(publicApp, publicAppCB, codeOf(loc), v)))
	})
	t.Run("pending request found by state when the cookie is lost", func(t *testing.T) {
		a, other := newBrowser(t, e), newBrowser(t, e)
		q, v := s256Params(publicApp, publicAppCB, "st-19")
		_, page := a.authorize(q)
		code := codeOf(location(t, other.signIn(page), http.StatusFound))
		wantTokens(t, e.token(t, codeForm(publicApp, publicAppCB, code, v)))
	})
	t.Run("no state and no cookie: the code stays unbound and is refused", func(t *testing.T) {
		a, other := newBrowser(t, e), newBrowser(t, e)
		q, v := s256Params(publicApp, publicAppCB, "")
		_, page := a.authorize(q)
		code := codeOf(location(t, other.signIn(page), http.StatusFound))
		before := e.legacy.count("/oauth/token")
		wantTokenError(t, e.token(t, codeForm(publicApp, publicAppCB, code, v)), "invalid_grant", "no PKCE challenge")
		unchanged(t, e, "/oauth/token", before)
	})
	t.Run("no state: the cookie alone binds the code", func(t *testing.T) {
		b := newBrowser(t, e)
		q, v := s256Params(publicApp, publicAppCB, "")
		wantTokens(t, e.token(t, codeForm(publicApp, publicAppCB, codeOf(b.codeFlow(q)), v)))
	})
	t.Run("someone else claiming the victim's state cannot have the code bound to their challenge", func(t *testing.T) {
		victim, attacker, cookieless := newBrowser(t, e), newBrowser(t, e), newBrowser(t, e)
		q, v := s256Params(publicApp, publicAppCB, "st-20")
		_, page := victim.authorize(q)
		qa, va := s256Params(publicApp, publicAppCB, "st-20")
		attacker.authorize(qa)
		// Without the victim's cookie the state record is ambiguous: bind nothing.
		code := codeOf(location(t, cookieless.signIn(page), http.StatusFound))
		wantTokenError(t, e.token(t, codeForm(publicApp, publicAppCB, code, va)), "invalid_grant", "no PKCE challenge")
		// With it, the victim's own challenge is bound.
		_, page = victim.authorize(q)
		attacker.authorize(qa)
		code = codeOf(location(t, victim.signIn(page), http.StatusFound))
		wantTokens(t, e.token(t, codeForm(publicApp, publicAppCB, code, v)))
	})
	t.Run("response_mode=fragment: the code in the fragment is bound", func(t *testing.T) {
		b := newBrowser(t, e)
		q, v := s256Params(publicApp, publicAppCB, "st-21")
		q.Set("response_mode", "fragment")
		loc := b.codeFlow(q)
		if loc.RawQuery != "" {
			t.Fatalf("want the code in the fragment: %s", loc)
		}
		wantTokens(t, e.token(t, codeForm(publicApp, publicAppCB, codeOf(loc), v)))
	})
	t.Run("response_mode=form_post: refused up front", func(t *testing.T) {
		b := newBrowser(t, e)
		q, _ := s256Params(publicApp, publicAppCB, "st-22")
		q.Set("response_mode", "form_post")
		resp, _ := b.authorize(q)
		wantErrorRedirect(t, resp, publicAppCB, "st-22", "response_mode")
	})
	t.Run("repeated code_challenge: 400 page", func(t *testing.T) {
		b := newBrowser(t, e)
		q, _ := s256Params(publicApp, publicAppCB, "st-23")
		q.Add("code_challenge", "x")
		before := e.legacy.count("/authorize")
		resp, body := b.authorize(q)
		wantErrorPage(t, resp, body, "code_challenge is repeated")
		unchanged(t, e, "/authorize", before)
	})
	t.Run("path variants of the endpoints are guarded too", func(t *testing.T) {
		b := newBrowser(t, e)
		for _, p := range []string{"/AUTHORIZE", "/authorize/", "//authorize", "/authorize;jsessionid=1", "/x/../authorize"} {
			resp, _ := b.get(p, authParams(publicApp, publicAppCB, "st-24"))
			wantErrorRedirect(t, resp, publicAppCB, "st-24", "code_challenge is required")
		}
		q, _ := s256Params(publicApp, publicAppCB, "st-24b")
		code := codeOf(b.codeFlow(q))
		for _, p := range []string{"/oauth/token/", "/OAUTH/token", "/oauth//token"} {
			req, _ := http.NewRequest(http.MethodPost, e.base+p, strings.NewReader(codeForm(publicApp, publicAppCB, code, "").Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("token request to %s: status %d, want 400", p, resp.StatusCode)
			}
		}
	})
	t.Run("token request that is not form-encoded: invalid_request", func(t *testing.T) {
		before := e.legacy.count("/oauth/token")
		req, _ := http.NewRequest(http.MethodPost, e.base+"/oauth/token", strings.NewReader(`{"grant_type":"authorization_code","code":"x"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		wantTokenError(t, tokenResult{status: resp.StatusCode, header: resp.Header, body: body}, "invalid_request", "form-encoded")
		unchanged(t, e, "/oauth/token", before)
	})
	t.Run("other grant types pass through", func(t *testing.T) {
		before := e.legacy.count("/oauth/token")
		wantTokens(t, e.token(t, url.Values{"grant_type": {"client_credentials"}}, confApp, confAppSecret))
		if e.legacy.count("/oauth/token") != before+1 {
			t.Error("the upstream did not see the client_credentials request")
		}
	})
	t.Run("discovery advertises the allowed methods", func(t *testing.T) {
		b := newBrowser(t, e)
		resp, body := b.get("/.well-known/openid-configuration", nil)
		var doc map[string]any
		if err := json.Unmarshal([]byte(body), &doc); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("discovery: %d %v %q", resp.StatusCode, err, body)
		}
		if m, _ := doc["code_challenge_methods_supported"].([]any); len(m) != 1 || m[0] != "S256" {
			t.Errorf("code_challenge_methods_supported = %v, want [S256]", doc["code_challenge_methods_supported"])
		}
		if doc["issuer"] != e.base {
			t.Errorf("issuer = %v, want the rest of the document kept", doc["issuer"])
		}
		if resp.Header.Get("ETag") != "" {
			t.Error("the upstream's ETag was kept for a changed body")
		}
	})
}
