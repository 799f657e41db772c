package pkceauth

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-pkce/caddy-pkce/internal/seal"
	"github.com/caddy-pkce/caddy-pkce/internal/testop"
)

// TestCallbackRejectsBadState: a callback whose state does not match a live
// login in this browser is refused before the code is used, and creates
// nothing.
func TestCallbackRejectsBadState(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startSite(t, op, siteOptions{})

	// refused checks a refused callback: 400, no session, the code never
	// exchanged.
	refused := func(t *testing.T, b *browser, target, reason string) *reply {
		t.Helper()
		tokens := len(op.TokenRequests())
		r := s.callback(b, target)
		expectStatus(t, r, http.StatusBadRequest)
		s.expectNoSessionSet(t, b, r)
		s.expectFailureReason(t, reason)
		if len(op.TokenRequests()) != tokens {
			t.Error("the code of a refused callback was exchanged")
		}
		if !strings.Contains(r.Header.Get("Content-Type"), "text/html") {
			t.Errorf("callback error is %q, want an HTML page for the browser", r.Header.Get("Content-Type"))
		}
		return r
	}

	t.Run("missing state", func(t *testing.T) {
		b := newBrowser(t, s)
		ls := s.startLogin(t, b, "/")
		cb, _ := url.Parse(s.authorize(t, b, ls))
		q := cb.Query()
		q.Del("state")
		cb.RawQuery = q.Encode()
		r := refused(t, b, cb.String(), "missing or malformed state")
		expectNoSetCookie(t, r)
		if !strings.Contains(r.Body, "Login state missing") {
			t.Errorf("page %q does not explain the missing state", r.Body)
		}
		// The pending login is untouched and still completes.
		if b.cookie(s, s.txnName(ls.state)) == nil {
			t.Fatal("a callback without state consumed the pending login")
		}
	})

	t.Run("short state", func(t *testing.T) {
		b := newBrowser(t, s)
		r := refused(t, b, s.base+"/oauth2/callback?code=abc&state=short", "missing or malformed state")
		expectNoSetCookie(t, r)
	})

	t.Run("forged state", func(t *testing.T) {
		b := newBrowser(t, s)
		ls := s.startLogin(t, b, "/")
		cb, _ := url.Parse(s.authorize(t, b, ls))
		q := cb.Query()
		q.Set("state", randomToken())
		cb.RawQuery = q.Encode()
		r := refused(t, b, cb.String(), "state does not match a live login")
		expectNoSetCookie(t, r)
		if !strings.Contains(r.Body, "Login expired or not recognised") {
			t.Errorf("page %q does not explain", r.Body)
		}
	})

	t.Run("state with the right prefix", func(t *testing.T) {
		// Same cookie name (first 16 characters), different state: the
		// sealed state must match in full.
		b := newBrowser(t, s)
		ls := s.startLogin(t, b, "/")
		cb, _ := url.Parse(s.authorize(t, b, ls))
		q := cb.Query()
		q.Set("state", ls.state[:txnIDLength]+strings.Repeat("A", len(ls.state)-txnIDLength))
		cb.RawQuery = q.Encode()
		refused(t, b, cb.String(), "state does not match a live login")
		if b.cookie(s, s.txnName(ls.state)) == nil {
			t.Error("a mismatched state consumed the pending login")
		}
	})

	t.Run("state of another browser", func(t *testing.T) {
		victim, attacker := newBrowser(t, s), newBrowser(t, s)
		ls := s.startLogin(t, victim, "/")
		cb := s.authorize(t, victim, ls)
		// The attacker plays the victim's callback in its own browser
		// (login CSRF / a leaked callback URL).
		r := refused(t, attacker, cb, "state does not match a live login")
		expectNoSetCookie(t, r)
		// The victim's own login still completes.
		r = s.callback(victim, cb)
		expectStatus(t, r, http.StatusSeeOther)
		s.expectNoFailure(t)
	})

	t.Run("transaction cookie of another login", func(t *testing.T) {
		// A transaction cookie copied under another state's name does
		// not open: it is sealed for its own name.
		b := newBrowser(t, s)
		ls1 := s.startLogin(t, b, "/")
		ls2 := s.startLogin(t, b, "/")
		cb2 := s.authorize(t, b, ls2)
		b.setCookie(s, s.txnName(ls2.state), b.cookie(s, s.txnName(ls1.state)).Value)
		refused(t, b, cb2, "state does not match a live login")
	})

	t.Run("replayed callback", func(t *testing.T) {
		b := newBrowser(t, s)
		ls := s.startLogin(t, b, "/")
		cb := s.authorize(t, b, ls)
		saved := b.cookie(s, s.txnName(ls.state)).Value
		r := s.callback(b, cb)
		expectStatus(t, r, http.StatusSeeOther)
		s.expectNoFailure(t)

		// The same callback again in the same browser: the transaction
		// is used up.
		b.deleteCookie(s, "pkce_session")
		r = refused(t, b, cb, "state does not match a live login")
		expectNoSetCookie(t, r)

		// Even with a copy of the transaction cookie the code is
		// single-use at the provider: nothing is created.
		b2 := newBrowser(t, s)
		b2.setCookie(s, s.txnName(ls.state), saved)
		tokens := len(op.TokenRequests())
		r = s.callback(b2, cb)
		expectStatus(t, r, http.StatusBadGateway)
		s.expectNoSessionSet(t, b2, r)
		s.expectTxnConsumed(t, b2, r, ls.state)
		s.expectFailureReason(t, "token endpoint answered HTTP 400 error=invalid_grant")
		if len(op.TokenRequests()) != tokens+1 {
			t.Error("want exactly one more token request")
		}
	})

	t.Run("expired transaction", func(t *testing.T) {
		b := newBrowser(t, s)
		ls := s.startLogin(t, b, "/")
		cb := s.authorize(t, b, ls)
		advanceClock(t, 10*time.Minute+2*time.Second) // login_timeout 10m
		r := refused(t, b, cb, "state does not match a live login")
		s.expectTxnConsumed(t, b, r, ls.state)
	})

	t.Run("transaction from the future", func(t *testing.T) {
		// Beyond the allowed clock skew a transaction's start time is
		// not believable.
		b := newBrowser(t, s)
		ls := s.startLogin(t, b, "/")
		cb := s.authorize(t, b, ls)
		advanceClock(t, -5*time.Minute)
		refused(t, b, cb, "state does not match a live login")
	})

	t.Run("callback by PUT", func(t *testing.T) {
		b := newBrowser(t, s)
		r := b.do(http.MethodPut, s.base+"/oauth2/callback?state=x", navigationHeaders, nil)
		expectStatus(t, r, http.StatusBadRequest)
		s.expectFailureReason(t, "method PUT not allowed")
	})
}

// TestCallbackRejectsBadResponses: every check of the provider's answer,
// each with the misbehaviour that trips it. A matched transaction is used
// up, no session is created, and the log names the check.
func TestCallbackRejectsBadResponses(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startSite(t, op, siteOptions{auth: map[string]any{"userinfo": true}})

	// A good login first, so the provider's keys are cached: the unknown
	// kid case then shows the keys being fetched again.
	b := newBrowser(t, s)
	s.login(t, b, "/")
	s.expectNoFailure(t)

	cases := []struct {
		name      string
		mis       testop.Misbehaviour
		status    int
		reason    string
		exchanged bool   // the code reached the token endpoint
		page      string // text of the error page
	}{
		// RFC 9207 authorization response iss.
		{"iss parameter of another issuer", testop.Misbehaviour{IssParam: "https://evil.example"}, 400,
			"iss parameter missing or not equal to the issuer (RFC 9207)", false, "Login response from the wrong provider"},
		{"iss parameter with a trailing slash", testop.Misbehaviour{IssParam: op.Issuer() + "/"}, 400,
			"iss parameter missing or not equal to the issuer (RFC 9207)", false, "wrong provider"},
		{"iss parameter omitted though advertised", testop.Misbehaviour{IssParam: "omit"}, 400,
			"iss parameter missing or not equal to the issuer (RFC 9207)", false, "wrong provider"},

		// Errors from the authorization endpoint.
		{"access_denied", testop.Misbehaviour{AuthError: "access_denied"}, 403,
			"provider returned error access_denied", false, "refused the sign-in"},
		{"login_required", testop.Misbehaviour{AuthError: "login_required"}, 403,
			"provider returned error login_required", false, "login_required"},
		{"server_error", testop.Misbehaviour{AuthError: "server_error"}, 502,
			"provider returned error server_error", false, "server_error"},
		{"temporarily_unavailable", testop.Misbehaviour{AuthError: "temporarily_unavailable"}, 502,
			"provider returned error temporarily_unavailable", false, "temporarily_unavailable"},

		// Token endpoint.
		{"token invalid_grant", testop.Misbehaviour{TokenError: "invalid_grant"}, 502,
			"token endpoint answered HTTP 400 error=invalid_grant", true, "Sign-in could not be completed"},
		{"token HTTP 500", testop.Misbehaviour{TokenStatus500: true}, 502,
			"token endpoint answered HTTP 500", true, "Sign-in could not be completed"},
		{"no id_token", testop.Misbehaviour{OmitIDToken: true}, 401,
			"token response has no id_token", true, "Sign-in rejected"},

		// ID token.
		{"wrong nonce", testop.Misbehaviour{WrongNonce: true}, 401,
			"nonce does not match", true, "Sign-in rejected"},
		{"bad signature", testop.Misbehaviour{BadSignature: true}, 401,
			"ID token: failed to verify signature", true, "Sign-in rejected"},
		{"alg none", testop.Misbehaviour{AlgNone: true}, 401,
			"ID token:", true, "Sign-in rejected"},
		{"HS256", testop.Misbehaviour{SignHS256: true}, 401,
			"ID token:", true, "Sign-in rejected"},
		{"unknown kid", testop.Misbehaviour{UnknownKid: true}, 401,
			"ID token: failed to verify signature", true, "Sign-in rejected"},
		{"wrong iss", testop.Misbehaviour{WrongIssuer: true}, 401,
			"ID token: oidc: id token issued by a different provider", true, "Sign-in rejected"},
		{"wrong aud", testop.Misbehaviour{WrongAudience: true}, 401,
			"ID token: oidc: expected audience", true, "Sign-in rejected"},
		{"several aud without azp", testop.Misbehaviour{ExtraAudienceNoAzp: true}, 401,
			"ID token has several audiences but no azp", true, "Sign-in rejected"},
		{"wrong azp", testop.Misbehaviour{WrongAzp: true}, 401,
			"ID token azp is not this client", true, "Sign-in rejected"},
		{"expired ID token", testop.Misbehaviour{Expired: true}, 401,
			"ID token: oidc: token is expired", true, "Sign-in rejected"},
		{"iat in the future", testop.Misbehaviour{IssuedInFuture: true}, 401,
			"ID token iat is missing or in the future", true, "Sign-in rejected"},

		// Userinfo.
		{"userinfo of another sub", testop.Misbehaviour{UserinfoWrongSub: true}, 401,
			"userinfo sub differs from the ID token's sub", true, "Sign-in rejected"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			op.Misbehave(c.mis)
			defer op.Misbehave(testop.Misbehaviour{})
			b := newBrowser(t, s)
			ls := s.startLogin(t, b, "/after")
			before := op.Counts()
			tokens := len(op.TokenRequests())
			r := s.callback(b, s.authorize(t, b, ls))
			expectStatus(t, r, c.status)
			s.expectNoSessionSet(t, b, r)
			s.expectTxnConsumed(t, b, r, ls.state)
			s.expectFailureReason(t, c.reason)
			if exchanged := len(op.TokenRequests()) > tokens; exchanged != c.exchanged {
				t.Errorf("code exchanged: %v, want %v", exchanged, c.exchanged)
			}
			if r.Location() != "" {
				t.Errorf("failed callback redirects to %q", r.Location())
			}
			if !strings.Contains(r.Body, c.page) {
				t.Errorf("error page %q does not contain %q", tail(r.Body, 400), c.page)
			}
			if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q", cc)
			}
			if c.mis.UnknownKid {
				if n := op.Counts().JWKS - before.JWKS; n != 1 {
					t.Errorf("unknown kid fetched the JWKS %d times, want once", n)
				}
			}
			// The browser is not logged in.
			expectStatus(t, b.fetch(s.base+"/after"), http.StatusUnauthorized)
		})
	}

	// And the provider behaving again logs in fine.
	s.login(t, newBrowser(t, s), "/")
	s.expectNoFailure(t)
}

// TestIssParameterNotAdvertised: without discovery (explicit endpoints),
// nothing promised RFC 9207, so a response without iss is accepted, while
// a wrong one is still refused.
func TestIssParameterNotAdvertised(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startSite(t, op, siteOptions{auth: map[string]any{
		"authorization_endpoint": op.Issuer() + testop.AuthorizePath,
		"token_endpoint":         op.Issuer() + testop.TokenPath,
		"jwks_uri":               op.Issuer() + testop.JWKSPath,
	}})
	op.Misbehave(testop.Misbehaviour{IssParam: "omit"})
	s.login(t, newBrowser(t, s), "/")
	s.expectNoFailure(t)
	if n := op.Counts().Discovery; n != 0 {
		t.Errorf("discovery fetched %d times with explicit endpoints", n)
	}

	op.Misbehave(testop.Misbehaviour{IssParam: "https://evil.example"})
	b := newBrowser(t, s)
	ls := s.startLogin(t, b, "/")
	r := s.callback(b, s.authorize(t, b, ls))
	expectStatus(t, r, http.StatusBadRequest)
	s.expectTxnConsumed(t, b, r, ls.state)
	s.expectFailureReason(t, "RFC 9207")
}

// TestTamperedSessions: a session cookie that is tampered with, truncated,
// sealed with another key or for another purpose, or malformed is no
// session: navigations log in again, scripts get 401, never a 500.
func TestTamperedSessions(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startSite(t, op, siteOptions{})
	b := newBrowser(t, s)
	s.login(t, b, "/")
	good := b.cookie(s, "pkce_session").Value
	s.newLogs()

	sealWith := func(key, purpose, name string, plain []byte) string {
		k, err := seal.NewKeyring([][]byte{[]byte(key)}, purpose)
		if err != nil {
			t.Fatal(err)
		}
		return k.Seal(name, plain)
	}
	validSession := func(mod func(*session)) []byte {
		t := now()
		sess := session{UserID: "mallory", Subject: "mallory", IssuedAt: t.Unix(), Expires: t.Add(time.Hour).Unix(), LastSeen: t.Unix()}
		if mod != nil {
			mod(&sess)
		}
		b, _ := json.Marshal(sess)
		return b
	}
	flip := func(s string, i int) string {
		c := s[i]
		r := byte('A')
		if c == 'A' {
			r = 'B'
		}
		return s[:i] + string(r) + s[i+1:]
	}

	cases := map[string]string{
		"one character flipped in the middle":  flip(good, len(good)/2),
		"first character flipped":              flip(good, 0),
		"last character flipped":               flip(good, len(good)-1),
		"truncated":                            good[:len(good)-4],
		"extended":                             good + "AAAA",
		"garbage":                              "not-a-session",
		"padding":                              good + "==",
		"huge":                                 strings.Repeat("A", 20000),
		"chunk header without chunks":          "3." + good,
		"bad chunk count":                      "99." + good,
		"sealed with another key":              sealWith(testKeyB, "session", "pkce_session", validSession(nil)),
		"sealed for another cookie name":       sealWith(testKeyA, "session", "other_cookie", validSession(nil)),
		"sealed as a transaction":              sealWith(testKeyA, "transaction", "pkce_session", validSession(nil)),
		"right key, not JSON":                  sealWith(testKeyA, "session", "pkce_session", []byte("not json")),
		"right key, no subject":                sealWith(testKeyA, "session", "pkce_session", validSession(func(s *session) { s.Subject, s.UserID = "", "" })),
		"right key, expired":                   sealWith(testKeyA, "session", "pkce_session", validSession(func(s *session) { s.Expires = now().Add(-time.Second).Unix() })),
		"right key, idle too long":             sealWith(testKeyA, "session", "pkce_session", validSession(func(s *session) { s.LastSeen = now().Add(-2 * time.Hour).Unix() })),
		"right key, JSON null":                 sealWith(testKeyA, "session", "pkce_session", []byte("null")),
		"right key, wrong types":               sealWith(testKeyA, "session", "pkce_session", []byte(`{"uid":1,"exp":"x"}`)),
		"right key, huge expiry but no userid": sealWith(testKeyA, "session", "pkce_session", []byte(`{"exp":99999999999,"ls":99999999999}`)),
	}
	for name, value := range cases {
		t.Run(name, func(t *testing.T) {
			bt := newBrowser(t, s)
			bt.setCookie(s, "pkce_session", value)
			r := bt.navigate(s.base + "/page")
			expectStatus(t, r, http.StatusFound)
			if !strings.HasPrefix(r.Location(), op.Issuer()+testop.AuthorizePath) {
				t.Errorf("navigation went to %q, want a new login", r.Location())
			}
			r = bt.fetch(s.base + "/api")
			expectStatus(t, r, http.StatusUnauthorized)
			expectNoSetCookie(t, r)
			r = bt.do(http.MethodPost, s.base+"/api", fetchHeaders, strings.NewReader("{}"))
			expectStatus(t, r, http.StatusUnauthorized)
		})
	}
	// A crafted session sealed with the right key is accepted: the
	// rejections above are about the cookie, not the harness.
	bt := newBrowser(t, s)
	bt.setCookie(s, "pkce_session", sealWith(testKeyA, "session", "pkce_session", validSession(nil)))
	r := bt.fetch(s.base + "/api")
	expectStatus(t, r, http.StatusOK)
	if got := r.Fields()["id"]; got != "mallory" {
		t.Errorf("crafted session id %q", got)
	}
	// The original cookie still works.
	expectStatus(t, b.fetch(s.base+"/api"), http.StatusOK)
	for _, e := range s.newLogs() {
		if lvl := e.str("level"); lvl == "error" {
			t.Errorf("error logged for a bad cookie: %v", e)
		}
	}
}

// TestOpenRedirectPayloads: whatever path the login started from, the
// callback's 303 goes to a same-origin path, "/" when the path could be
// read as another origin.
func TestOpenRedirectPayloads(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startSite(t, op, siteOptions{})
	cases := []struct {
		name    string
		rawPath string // as sent on the request line
		want    string
	}{
		{"scheme-relative", "//evil.example/", "/"},
		{"scheme-relative with path", "//evil.example/x?y=1", "/"},
		{"encoded slashes", "/%2F%2Fevil.example", "/"},
		{"encoded slash second", "/%2Fevil.example", "/"},
		{"double-encoded slashes", "/%252F%252Fevil.example", "/"},
		{"backslash", "/\\evil.example", "/"},
		{"encoded backslash", "/%5Cevil.example", "/"},
		{"encoded tab", "/%09/evil.example", "/"},
		{"encoded newline", "/%0A/evil.example", "/"},
		{"triple slash", "///evil.example", "/"},
		{"fullwidth slash", "/%EF%BC%8Fevil.example", "/"},
		// Same-origin paths come back unchanged.
		{"plain path", "/docs/page?a=1&b=2", "/docs/page?a=1&b=2"},
		{"encoded slash inside", "/a%2Fb", "/a%2Fb"},
		{"at sign", "/user@evil.example", "/user@evil.example"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBrowser(t, s)
			start := b.raw(s, "GET "+c.rawPath+" HTTP/1.1", navigationHeaders)
			if start.Status != http.StatusFound {
				t.Fatalf("navigation: %s; want 302", start)
			}
			loc, _ := url.Parse(start.Location())
			ls := loginStart{reply: start, params: loc.Query(), state: loc.Query().Get("state")}
			r := s.callback(b, s.authorize(t, b, ls))
			expectStatus(t, r, http.StatusSeeOther)
			if r.Location() != c.want {
				t.Errorf("after login from %q the callback redirected to %q, want %q", c.rawPath, r.Location(), c.want)
			}
		})
	}
	s.expectNoFailure(t)
}

// TestTransactionClockSkew: several instances behind a load balancer share
// the transaction cookie; the one answering the callback may have a clock
// a little behind the one that started the login. Within clock_skew that
// is no reason to refuse the login.
func TestTransactionClockSkew(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startSite(t, op, siteOptions{})
	b := newBrowser(t, s)
	ls := s.startLogin(t, b, "/x")
	cb := s.authorize(t, b, ls)
	advanceClock(t, -3*time.Second)
	r := s.callback(b, cb)
	expectStatus(t, r, http.StatusSeeOther)
	s.expectNoFailure(t)
}
