package pkceauth

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-pkce/caddy-pkce/internal/seal"
	"github.com/caddy-pkce/caddy-pkce/internal/testop"
)

var base64url43 = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// TestLoginFlow follows one login hop by hop: the navigation is sent to the
// provider with PKCE S256, state and nonce; the callback exchanges the code
// with the matching verifier, sets the session and returns to the deep link;
// the session then serves requests without calling the provider.
func TestLoginFlow(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startSite(t, op, siteOptions{})
	b := newBrowser(t, s)

	// 1. The navigation goes to the provider.
	ls := s.startLogin(t, b, "/deep/link?x=1&y=2")
	if cc := ls.reply.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("login redirect Cache-Control %q, want no-store", cc)
	}
	p := ls.params
	for k, want := range map[string]string{
		"response_type":         "code",
		"client_id":             op.ClientID(),
		"code_challenge_method": "S256",
		"redirect_uri":          s.base + "/oauth2/callback",
	} {
		if got := p[k]; len(got) != 1 || got[0] != want {
			t.Errorf("authorization request %s = %q, want %q", k, got, want)
		}
	}
	if !slices.Contains(strings.Fields(p.Get("scope")), "openid") {
		t.Errorf("scope %q lacks openid", p.Get("scope"))
	}
	if got := strings.Fields(p.Get("scope")); !slices.Equal(got, []string{"openid", "email", "profile"}) {
		t.Errorf("scope %q, want the default openid email profile", got)
	}
	for _, k := range []string{"code_challenge", "state", "nonce"} {
		if !base64url43.MatchString(p.Get(k)) {
			t.Errorf("%s %q is not 43 base64url characters (256 random bits)", k, p.Get(k))
		}
	}
	if p.Get("state") == p.Get("nonce") {
		t.Error("state and nonce are equal")
	}
	if p.Has("response_mode") {
		t.Errorf("response_mode %q sent in query mode", p.Get("response_mode"))
	}
	txn := ls.reply.SetCookie(s.txnName(ls.state))
	if txn == nil {
		t.Fatalf("no transaction cookie %s in %v", s.txnName(ls.state), ls.reply.Cookies)
	}
	if !txn.HttpOnly || txn.SameSite != http.SameSiteLaxMode || txn.Path != "/" || txn.Secure || txn.MaxAge != 600 || txn.Domain != "" {
		t.Errorf("transaction cookie %+v: want HttpOnly, SameSite=Lax, Path=/, Max-Age=600, no Domain, not Secure (cookie_secure never)", txn)
	}
	if len(ls.reply.Cookies) != 1 {
		t.Errorf("login start set cookies %v, want only the transaction cookie", ls.reply.Cookies)
	}
	if c := op.Counts(); c.Token != 0 || c.Authorize != 0 {
		t.Errorf("provider calls before the browser reached it: %+v", c)
	}

	// 2. The provider answers the callback; the callback finishes the login.
	cbURL := s.authorize(t, b, ls)
	cb := s.callback(b, cbURL)
	expectStatus(t, cb, http.StatusSeeOther)
	if loc := cb.Location(); loc != "/deep/link?x=1&y=2" {
		t.Errorf("callback redirected to %q, want the deep link /deep/link?x=1&y=2", loc)
	}
	if cc := cb.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("callback Cache-Control %q, want no-store", cc)
	}
	sess := cb.SetCookie("pkce_session")
	if sess == nil || sess.Value == "" {
		t.Fatalf("callback set no session cookie: %v", cb.Cookies)
	}
	if !sess.HttpOnly || sess.SameSite != http.SameSiteLaxMode || sess.Path != "/" || sess.Domain != "" {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Lax, Path=/, no Domain", sess)
	}
	if sess.MaxAge < int((12*time.Hour-time.Minute)/time.Second) || sess.MaxAge > int(12*time.Hour/time.Second) {
		t.Errorf("session cookie Max-Age %d, want about 12h (session_lifetime default)", sess.MaxAge)
	}
	s.expectTxnConsumed(t, b, cb, ls.state)
	s.expectNoFailure(t)

	// The provider saw the verifier of the challenge, for the same redirect_uri.
	tokens := op.TokenRequests()
	if len(tokens) != 1 {
		t.Fatalf("token requests %d, want 1", len(tokens))
	}
	tr := tokens[0]
	sum := sha256.Sum256([]byte(tr.CodeVerifier))
	if got := base64.RawURLEncoding.EncodeToString(sum[:]); got != p.Get("code_challenge") {
		t.Errorf("BASE64URL(SHA256(code_verifier)) = %q, want the code_challenge %q", got, p.Get("code_challenge"))
	}
	if tr.GrantType != "authorization_code" || tr.RedirectURI != p.Get("redirect_uri") || tr.ClientID != op.ClientID() || tr.AuthMethod != "none" {
		t.Errorf("token request %+v: want grant authorization_code, the same redirect_uri, client_id, no client authentication", tr)
	}
	if cbq, _ := url.Parse(cbURL); tr.Code != cbq.Query().Get("code") {
		t.Errorf("exchanged code %q, want the callback's %q", tr.Code, cbq.Query().Get("code"))
	}

	// 3. The protected page, with the identity for later handlers.
	page := b.navigate(s.base + "/deep/link?x=1&y=2")
	expectStatus(t, page, http.StatusOK)
	f := page.Fields()
	for k, want := range map[string]string{
		"id":             "alice-sub",
		"email":          "alice@example.com",
		"email_verified": "true",
		"name":           "Alice Example",
		"username":       "alice",
		"groups":         "staff,admins",
		"claim_sub":      "alice-sub",
		"claim_groups":   "staff,admins",
		"cookie":         "",
		"uri":            "/deep/link?x=1&y=2",
	} {
		if f[k] != want {
			t.Errorf("upstream saw %s=%q, want %q", k, f[k], want)
		}
	}
	if v := page.Header.Values("Set-Cookie"); len(v) != 0 {
		t.Errorf("a fresh session was rewritten on use: %q", v)
	}

	// 4. Further requests need no provider.
	before := op.Counts()
	for range 3 {
		expectStatus(t, b.navigate(s.base+"/other"), http.StatusOK)
		expectStatus(t, b.fetch(s.base+"/api/data"), http.StatusOK)
	}
	if after := op.Counts(); after != before {
		t.Errorf("requests with a session called the provider: before %+v, after %+v", before, after)
	}

	// Secrets never reach the log.
	logs, err := os.ReadFile(s.logFile)
	if err != nil {
		t.Fatal(err)
	}
	cbq, _ := url.Parse(cbURL)
	for name, secret := range map[string]string{
		"code":           cbq.Query().Get("code"),
		"code_verifier":  tr.CodeVerifier,
		"session cookie": sess.Value,
		"state":          ls.state,
		"nonce":          p.Get("nonce"),
	} {
		if strings.Contains(string(logs), secret) {
			t.Errorf("the log contains the %s", name)
		}
	}
	if !strings.Contains(string(logs), `"login succeeded"`) {
		t.Error("no login succeeded entry in the log")
	}
}

// TestNonNavigationWithoutSession: scripts and API clients get a 401 with
// WWW-Authenticate and no login is started for them.
func TestNonNavigationWithoutSession(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startSite(t, op, siteOptions{})
	b := newBrowser(t, s)

	cases := []struct {
		name   string
		method string
		header http.Header
	}{
		{"fetch", http.MethodGet, fetchHeaders},
		{"fetch accepting anything", http.MethodGet, withHeaders(fetchHeaders, "Accept", "*/*")},
		{"XMLHttpRequest", http.MethodGet, http.Header{"X-Requested-With": {"XMLHttpRequest"}, "Accept": {"text/html"}}},
		{"navigation marked XHR", http.MethodGet, withHeaders(navigationHeaders, "X-Requested-With", "XMLHttpRequest")},
		{"POST form navigation", http.MethodPost, withHeaders(navigationHeaders, "Content-Type", "application/x-www-form-urlencoded")},
		{"DELETE", http.MethodDelete, fetchHeaders},
		{"curl", http.MethodGet, http.Header{"Accept": {"*/*"}}},
		{"no headers", http.MethodGet, http.Header{}},
		{"iframe", http.MethodGet, withHeaders(navigationHeaders, "Sec-Fetch-Mode", "no-cors", "Sec-Fetch-Dest", "iframe")},
		{"JSON before HTML", http.MethodGet, http.Header{"Accept": {"application/json, text/html"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := b.do(c.method, s.base+"/api/data?x=1", c.header, strings.NewReader("a=b"))
			expectStatus(t, r, http.StatusUnauthorized)
			if got := r.Header.Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("WWW-Authenticate %q, want Bearer", got)
			}
			expectNoSetCookie(t, r)
			if r.Header.Get("Location") != "" {
				t.Errorf("Location %q on a 401", r.Location())
			}
		})
	}
	if names := b.cookieNames(s); len(names) != 0 {
		t.Errorf("browser got cookies %v", names)
	}
	if c := op.Counts(); c.Authorize != 0 || c.Token != 0 {
		t.Errorf("provider called: %+v", c)
	}

	// Without Sec-Fetch headers (older browsers) an HTML Accept is a navigation.
	r := b.do(http.MethodGet, s.base+"/page", http.Header{"Accept": {"text/html,*/*;q=0.8"}}, nil)
	expectStatus(t, r, http.StatusFound)
	// HEAD navigations start a login as well.
	r = b.do(http.MethodHead, s.base+"/page", navigationHeaders, nil)
	expectStatus(t, r, http.StatusFound)
}

// TestPendingLogins: logins started in several tabs all complete; beyond
// max_pending_logins the oldest is dropped.
func TestPendingLogins(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startSite(t, op, siteOptions{auth: map[string]any{"max_pending_logins": 3}})
	b := newBrowser(t, s)

	// Two tabs, completed in the opposite order.
	tab1 := s.startLogin(t, b, "/one")
	tab2 := s.startLogin(t, b, "/two")
	if tab1.state == tab2.state || s.txnName(tab1.state) == s.txnName(tab2.state) {
		t.Fatal("two logins share a state or a cookie")
	}
	cb2 := s.authorize(t, b, tab2)
	cb1 := s.authorize(t, b, tab1)
	r := s.callback(b, cb2)
	expectStatus(t, r, http.StatusSeeOther)
	if r.Location() != "/two" {
		t.Errorf("tab 2 returned to %q", r.Location())
	}
	s.expectTxnConsumed(t, b, r, tab2.state)
	if b.cookie(s, s.txnName(tab1.state)) == nil {
		t.Error("completing tab 2 dropped tab 1's login")
	}
	r = s.callback(b, cb1)
	expectStatus(t, r, http.StatusSeeOther)
	if r.Location() != "/one" {
		t.Errorf("tab 1 returned to %q", r.Location())
	}
	s.expectTxnConsumed(t, b, r, tab1.state)
	s.expectNoFailure(t)

	// Four logins with max_pending_logins 3: the oldest is dropped. The
	// transactions record their start in seconds, so the clock moves a
	// second between them.
	b2 := newBrowser(t, s)
	var tabs []loginStart
	for i := range 4 {
		if i > 0 {
			advanceClock(t, time.Second)
		}
		tabs = append(tabs, s.startLogin(t, b2, "/tab"+string(rune('a'+i))))
	}
	if c := tabs[3].reply.SetCookie(s.txnName(tabs[0].state)); c == nil || c.MaxAge >= 0 {
		t.Errorf("the fourth login did not expire the oldest transaction cookie: %v", tabs[3].reply.Cookies)
	}
	if len(tabs[3].reply.Cookies) != 2 {
		t.Errorf("the fourth login set %v, want the new transaction and the expiry of the oldest only", tabs[3].reply.Cookies)
	}
	var pending []string
	for _, n := range b2.cookieNames(s) {
		if strings.HasPrefix(n, "pkce_txn_") {
			pending = append(pending, n)
		}
	}
	if len(pending) != 3 {
		t.Errorf("pending transaction cookies %v, want 3", pending)
	}
	callbacks := make([]string, 4)
	for i, ls := range tabs {
		callbacks[i] = s.authorize(t, b2, ls)
	}
	tokensBefore := len(op.TokenRequests())
	r = s.callback(b2, callbacks[0])
	expectStatus(t, r, http.StatusBadRequest)
	s.expectNoSessionSet(t, b2, r)
	s.expectFailureReason(t, "state does not match a live login")
	if len(op.TokenRequests()) != tokensBefore {
		t.Error("the dropped login's code was exchanged")
	}
	for i := 1; i < 4; i++ {
		r = s.callback(b2, callbacks[i])
		expectStatus(t, r, http.StatusSeeOther)
		if want := "/tab" + string(rune('a'+i)); r.Location() != want {
			t.Errorf("tab %d returned to %q, want %q", i, r.Location(), want)
		}
	}
	s.expectNoFailure(t)
}

// TestLogout: a same-origin logout clears the session and sends the
// browser to the provider's end_session_endpoint; a cross-site one is
// refused and leaves the session alone.
func TestLogout(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startSite(t, op, siteOptions{auth: map[string]any{"session": map[string]any{"store_id_token": true}}})
	b := newBrowser(t, s)
	ls := s.startLogin(t, b, "/")
	expectStatus(t, s.callback(b, s.authorize(t, b, ls)), http.StatusSeeOther)
	sessionValue := b.cookie(s, "pkce_session").Value

	crossSite := []struct {
		name   string
		method string
		header []string
	}{
		{"link from another site", http.MethodGet, []string{"Sec-Fetch-Site", "cross-site"}},
		{"link from a sibling subdomain", http.MethodGet, []string{"Sec-Fetch-Site", "same-site"}},
		{"form from another site", http.MethodPost, []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}},
		{"old browser, foreign Origin", http.MethodPost, []string{"Sec-Fetch-Site", "", "Origin", "https://evil.example"}},
		{"old browser, opaque Origin", http.MethodPost, []string{"Sec-Fetch-Site", "", "Origin", "null"}},
		{"same-origin claim with a foreign Origin", http.MethodPost, []string{"Sec-Fetch-Site", "same-origin", "Origin", "http://evil.example"}},
	}
	for _, c := range crossSite {
		t.Run("refused/"+c.name, func(t *testing.T) {
			h := withHeaders(navigationHeaders, c.header...)
			if h.Get("Sec-Fetch-Site") == "" {
				h.Del("Sec-Fetch-Site")
			}
			r := b.do(c.method, s.base+"/oauth2/logout", h, nil)
			expectStatus(t, r, http.StatusForbidden)
			expectNoSetCookie(t, r)
			if !strings.Contains(r.Body, "Logout refused") {
				t.Errorf("403 page %q does not say the logout was refused", r.Body)
			}
			if got := b.cookie(s, "pkce_session"); got == nil || got.Value != sessionValue {
				t.Fatal("refused logout changed the session cookie")
			}
			expectStatus(t, b.fetch(s.base+"/still-in"), http.StatusOK)
		})
	}
	if n := op.Counts().EndSession; n != 0 {
		t.Errorf("refused logouts reached the provider %d times", n)
	}

	// Same-origin logout.
	r := b.navigate(s.base+"/oauth2/logout", "Sec-Fetch-Site", "same-origin")
	expectStatus(t, r, http.StatusSeeOther)
	if c := r.SetCookie("pkce_session"); c == nil || c.MaxAge >= 0 || c.Value != "" || c.Path != "/" {
		t.Errorf("logout did not expire the session cookie: %v", r.Cookies)
	}
	if b.cookie(s, "pkce_session") != nil {
		t.Error("browser still has the session cookie")
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("logout Cache-Control %q", cc)
	}
	loc, err := url.Parse(r.Location())
	if err != nil || loc.Scheme+"://"+loc.Host+loc.Path != op.Issuer()+testop.EndSessionPath {
		t.Fatalf("logout redirected to %q, want the end_session_endpoint", r.Location())
	}
	q := loc.Query()
	if q.Get("client_id") != op.ClientID() || q.Get("post_logout_redirect_uri") != s.base+"/" || q.Get("id_token_hint") == "" {
		t.Errorf("end-session parameters %v: want client_id, post_logout_redirect_uri %s/ and id_token_hint", q, s.base)
	}
	// The hint is the ID token of this login (its nonce is the login's).
	if claims := jwtClaims(t, q.Get("id_token_hint")); claims["nonce"] != ls.params.Get("nonce") || claims["sub"] != "alice-sub" {
		t.Errorf("id_token_hint claims %v are not those of the login", claims)
	}
	end := b.get(r.Location())
	expectStatus(t, end, http.StatusFound)
	if end.Location() != s.base+"/" {
		t.Errorf("provider sent the browser back to %q", end.Location())
	}
	if n := len(op.EndSessionRequests()); n != 1 {
		t.Errorf("end-session requests %d, want 1", n)
	}
	// Logged out: navigations log in again, scripts get 401.
	expectStatus(t, b.fetch(s.base+"/"), http.StatusUnauthorized)
	expectStatus(t, b.navigate(s.base+"/"), http.StatusFound)

	// Logout without a session still clears and lands on the post-logout path.
	b2 := newBrowser(t, s)
	r = b2.navigate(s.base+"/oauth2/logout", "Sec-Fetch-Site", "same-origin")
	expectStatus(t, r, http.StatusSeeOther)
	if r.Location() != "/" {
		t.Errorf("logout without session went to %q, want /", r.Location())
	}
	// POST with a same-origin Origin works as well.
	b3 := newBrowser(t, s)
	s.login(t, b3, "/")
	r = b3.do(http.MethodPost, s.base+"/oauth2/logout", withHeaders(navigationHeaders, "Sec-Fetch-Site", "same-origin", "Origin", s.base), nil)
	expectStatus(t, r, http.StatusSeeOther)
	if b3.cookie(s, "pkce_session") != nil {
		t.Error("POST logout left the session cookie")
	}
	// Other methods are refused.
	r = b.do(http.MethodPut, s.base+"/oauth2/logout", fetchHeaders, nil)
	expectStatus(t, r, http.StatusMethodNotAllowed)
}

// TestLogoutIDTokenHint: the ID token is kept for id_token_hint by default
// only where it costs no request bytes (a server-side store); cookie-mode
// logouts name the client instead, and the cookie stays small.
func TestLogoutIDTokenHint(t *testing.T) {
	cases := []struct {
		name    string
		session map[string]any
		hint    bool
	}{
		{"cookie default", nil, false},
		{"cookie with store_id_token", map[string]any{"store_id_token": true}, true},
		{"caddy_storage default", map[string]any{"store": "caddy_storage"}, true},
		{"caddy_storage without store_id_token", map[string]any{"store": "caddy_storage", "store_id_token": false}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			op := testop.New(t, testop.Config{})
			opts := siteOptions{}
			if c.session != nil {
				opts.auth = map[string]any{"session": c.session}
			}
			s := startSite(t, op, opts)
			b := newBrowser(t, s)
			s.login(t, b, "/")
			size := len(b.cookie(s, "pkce_session").Value)
			if c.session == nil && size > 700 {
				t.Errorf("cookie-mode session cookie is %d bytes; the ID token or duplicated claims crept back in", size)
			}
			r := b.navigate(s.base+"/oauth2/logout", "Sec-Fetch-Site", "same-origin")
			expectStatus(t, r, http.StatusSeeOther)
			loc, err := url.Parse(r.Location())
			if err != nil {
				t.Fatal(err)
			}
			q := loc.Query()
			if q.Get("client_id") != op.ClientID() {
				t.Errorf("end-session client_id %q", q.Get("client_id"))
			}
			if got := q.Get("id_token_hint") != ""; got != c.hint {
				t.Errorf("id_token_hint sent: %v, want %v (session cookie %d bytes)", got, c.hint, size)
			}
			end := b.get(r.Location())
			expectStatus(t, end, http.StatusFound)
			if end.Location() != s.base+"/" {
				t.Errorf("provider sent the browser back to %q", end.Location())
			}
		})
	}
}

// TestLogoutWithoutEndSession: a provider without end_session_endpoint
// (Authelia, Kanidm, Google) ends at post_logout_redirect.
func TestLogoutWithoutEndSession(t *testing.T) {
	op := testop.New(t, testop.Config{})
	op.Misbehave(testop.Misbehaviour{NoEndSession: true})
	s := startSite(t, op, siteOptions{auth: map[string]any{"post_logout_redirect": "/goodbye"}})
	b := newBrowser(t, s)
	s.login(t, b, "/")
	r := b.navigate(s.base+"/oauth2/logout", "Sec-Fetch-Site", "same-origin")
	expectStatus(t, r, http.StatusSeeOther)
	if r.Location() != "/goodbye" {
		t.Errorf("logout went to %q, want /goodbye", r.Location())
	}
	if c := r.SetCookie("pkce_session"); c == nil || c.MaxAge >= 0 {
		t.Errorf("session cookie not expired: %v", r.Cookies)
	}
	if n := op.Counts().EndSession; n != 0 {
		t.Errorf("end-session endpoint called %d times", n)
	}
}

// jwtClaims decodes a JWT's payload without verifying it.
func jwtClaims(t *testing.T, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", raw)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

// TestProviderDown: Caddy loads and serves while the provider cannot be
// discovered; existing sessions keep working, new logins get a 503 page
// naming the provider, and logins work again once it is back.
func TestProviderDown(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startSite(t, op, siteOptions{})
	b := newBrowser(t, s)
	s.login(t, b, "/")

	// A config reload while discovery is down: the new handler cannot
	// discover the provider, and the load still succeeds.
	op.Misbehave(testop.Misbehaviour{DiscoveryDown: true})
	s.reload(s.opts)

	// The existing session needs no provider.
	r := b.navigate(s.base + "/page")
	expectStatus(t, r, http.StatusOK)
	if got := r.Fields()["id"]; got != "alice-sub" {
		t.Errorf("session id %q during the outage", got)
	}

	// A navigation without session: a 503 page, no transaction.
	b2 := newBrowser(t, s)
	r = b2.navigate(s.base + "/page")
	expectStatus(t, r, http.StatusServiceUnavailable)
	if !strings.Contains(r.Body, "Identity provider unreachable") || !strings.Contains(r.Body, "identity provider cannot be reached") {
		t.Errorf("503 page does not name the provider as unreachable: %q", r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("503 Content-Type %q, want HTML for a navigation", ct)
	}
	if r.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	expectNoSetCookie(t, r)
	// An API call without session is still a plain 401.
	expectStatus(t, b2.fetch(s.base+"/api"), http.StatusUnauthorized)
	// Logout works locally during the outage and lands on "/".
	b3 := newBrowser(t, s)
	b3.setCookie(s, "pkce_session", b.cookie(s, "pkce_session").Value)
	r = b3.navigate(s.base+"/oauth2/logout", "Sec-Fetch-Site", "same-origin")
	expectStatus(t, r, http.StatusSeeOther)
	if r.Location() != "/" {
		t.Errorf("logout during the outage went to %q, want /", r.Location())
	}
	if c := r.SetCookie("pkce_session"); c == nil || c.MaxAge >= 0 {
		t.Errorf("logout during the outage did not clear the session: %v", r.Cookies)
	}

	// The provider comes back: within the discovery backoff a login works.
	op.Misbehave(testop.Misbehaviour{})
	deadline := time.Now().Add(10 * time.Second)
	for {
		r = b2.navigate(s.base + "/page")
		if r.Status == http.StatusFound {
			break
		}
		if r.Status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("after the provider came back: %s", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.login(t, b2, "/page")
	expectStatus(t, b2.navigate(s.base+"/page"), http.StatusOK)
}

// TestProviderUnreachable: an issuer on a closed port. The config loads,
// logins get 503, sessions work.
func TestProviderUnreachable(t *testing.T) {
	op := testop.New(t, testop.Config{})
	closed := "http://127.0.0.1:" + strconv.Itoa(pickFreePort(t))
	s := startSite(t, op, siteOptions{auth: map[string]any{"issuer": closed, "timeout": "2s"}})
	b := newBrowser(t, s)
	r := b.navigate(s.base + "/")
	expectStatus(t, r, http.StatusServiceUnavailable)
	if !strings.Contains(r.Body, "Identity provider unreachable") {
		t.Errorf("503 page: %q", r.Body)
	}
	r = b.do(http.MethodGet, s.base+"/", http.Header{"Accept": {"application/json"}, "Sec-Fetch-Mode": {"navigate"}}, nil)
	expectStatus(t, r, http.StatusServiceUnavailable)

	// A session sealed with the configured key needs no provider.
	k, err := seal.NewKeyring([][]byte{[]byte(testKeyA)}, "session")
	if err != nil {
		t.Fatal(err)
	}
	t0 := now()
	plain, _ := json.Marshal(session{UserID: "bob", Subject: "bob", IssuedAt: t0.Unix(), Expires: t0.Add(time.Hour).Unix(), LastSeen: t0.Unix()})
	b.setCookie(s, "pkce_session", k.Seal("pkce_session", plain))
	r = b.fetch(s.base + "/api")
	expectStatus(t, r, http.StatusOK)
	if r.Fields()["id"] != "bob" {
		t.Errorf("session id %q", r.Fields()["id"])
	}
}

// TestErrorResponses: with handle_errors routes the module's errors reach
// them as caddyhttp.Error (with their status); without, the built-in page
// is HTML for navigations and JSON for API clients.
func TestErrorResponses(t *testing.T) {
	op := testop.New(t, testop.Config{})

	t.Run("handle_errors", func(t *testing.T) {
		s := startSite(t, op, siteOptions{handleErrors: true})
		b := newBrowser(t, s)
		r := b.fetch(s.base + "/api")
		expectStatus(t, r, http.StatusUnauthorized)
		if r.Body != "handled 401" {
			t.Errorf("body %q, want the errors route's \"handled 401\"", r.Body)
		}
		if r.Header.Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("WWW-Authenticate %q lost on the way through handle_errors", r.Header.Get("WWW-Authenticate"))
		}
		r = s.callback(b, s.base+"/oauth2/callback?code=x")
		expectStatus(t, r, http.StatusBadRequest)
		if r.Body != "handled 400" {
			t.Errorf("body %q, want \"handled 400\"", r.Body)
		}
		s.expectFailureReason(t, "missing or malformed state")

		// A failed callback still uses up its transaction.
		ls := s.startLogin(t, b, "/")
		op.Misbehave(testop.Misbehaviour{WrongNonce: true})
		r = s.callback(b, s.authorize(t, b, ls))
		op.Misbehave(testop.Misbehaviour{})
		expectStatus(t, r, http.StatusUnauthorized)
		if r.Body != "handled 401" {
			t.Errorf("body %q, want \"handled 401\"", r.Body)
		}
		s.expectTxnConsumed(t, b, r, ls.state)
		s.expectNoSessionSet(t, b, r)
		s.expectFailureReason(t, "nonce")

		r = b.navigate(s.base+"/oauth2/logout", "Sec-Fetch-Site", "cross-site")
		expectStatus(t, r, http.StatusForbidden)
		if r.Body != "handled 403" {
			t.Errorf("body %q, want \"handled 403\"", r.Body)
		}
	})

	t.Run("built-in pages", func(t *testing.T) {
		s := startSite(t, op, siteOptions{})
		b := newBrowser(t, s)
		r := b.fetch(s.base + "/api")
		expectStatus(t, r, http.StatusUnauthorized)
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("API 401 Content-Type %q, want application/json", ct)
		}
		var body map[string]any
		if err := json.Unmarshal([]byte(r.Body), &body); err != nil {
			t.Fatalf("API 401 body is not JSON: %q", r.Body)
		}
		if body["status"] != float64(401) || body["error"] != "Authentication required" || body["error_description"] == "" {
			t.Errorf("API 401 body %v", body)
		}
		if r.Header.Get("X-Content-Type-Options") != "nosniff" || r.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("API 401 headers %v", r.Header)
		}

		r = s.callback(b, s.base+"/oauth2/callback?code=x")
		expectStatus(t, r, http.StatusBadRequest)
		if ct := r.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("navigation error Content-Type %q, want HTML", ct)
		}
		if !strings.HasPrefix(r.Body, "<!doctype html>") || !strings.Contains(r.Body, "Login state missing") || !strings.Contains(r.Body, "HTTP 400") {
			t.Errorf("HTML error page %q", r.Body)
		}
		if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("error page CSP %q", csp)
		}

		// The provider's error text is escaped in the page.
		op.Misbehave(testop.Misbehaviour{AuthError: "access_denied"})
		ls := s.startLogin(t, b, "/")
		cb, _ := url.Parse(s.authorize(t, b, ls))
		op.Misbehave(testop.Misbehaviour{})
		q := cb.Query()
		q.Set("error_description", `<script>alert(1)</script>`)
		cb.RawQuery = q.Encode()
		r = s.callback(b, cb.String())
		expectStatus(t, r, http.StatusForbidden)
		if strings.Contains(r.Body, "<script>") || !strings.Contains(r.Body, "&lt;script&gt;") {
			t.Errorf("provider text not escaped in the page: %q", r.Body)
		}
	})
}

// TestFormPostOverPlainHTTP: form_post cannot work over plain http (the
// SameSite=None cookie must be Secure), so no login starts there; on
// localhost browsers accept Secure cookies over http, so it does.
func TestFormPostOverPlainHTTP(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startSite(t, op, siteOptions{auth: map[string]any{"response_mode": "form_post", "cookie_secure": "auto"}})
	for _, c := range []struct {
		host string
		want int
	}{
		{"app.example.com", http.StatusInternalServerError},
		{"127.0.0.1", http.StatusFound},
		{"localhost:8080", http.StatusFound},
	} {
		req, err := http.NewRequest(http.MethodGet, s.base+"/page", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = c.host
		req.Header = withHeaders(navigationHeaders)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("form_post login over http for Host %s: %d, want %d", c.host, resp.StatusCode, c.want)
		}
		if c.want != http.StatusFound && len(resp.Header.Values("Set-Cookie")) != 0 {
			t.Errorf("refused login set cookies %v", resp.Header.Values("Set-Cookie"))
		}
	}
	if n := len(op.AuthRequests()); n != 0 {
		t.Errorf("%d authorization requests reached the provider", n)
	}
}

func TestIsLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "localhost:80": true, "app.localhost": true, "127.0.0.1": true, "127.1.2.3:9": true,
		"[::1]:443": true, "::1": true, "localhost.": true,
		"example.com": false, "localhost.example.com": false, "10.0.0.1": false, "[::2]:80": false, "": false,
	} {
		if got := isLoopbackHost(host); got != want {
			t.Errorf("isLoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

// TestFormPostOverTLS: response_mode form_post over HTTPS with
// cookie_secure auto. The transaction cookie is SameSite=None; Secure so
// the provider's cross-site POST carries it; the session cookie is a Lax
// __Host- cookie.
func TestFormPostOverTLS(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startSite(t, op, siteOptions{tls: true, auth: map[string]any{"response_mode": "form_post"}})
	b := newBrowser(t, s)

	ls := s.startLogin(t, b, "/deep?q=1")
	if got := ls.params.Get("response_mode"); got != "form_post" {
		t.Errorf("authorization request response_mode %q, want form_post", got)
	}
	if got := ls.params.Get("redirect_uri"); got != s.base+"/oauth2/callback" {
		t.Errorf("redirect_uri %q, want %s/oauth2/callback", got, s.base)
	}
	txn := ls.reply.SetCookie(s.txnName(ls.state))
	if txn == nil {
		t.Fatalf("no __Host- transaction cookie in %v", ls.reply.Cookies)
	}
	if !txn.Secure || !txn.HttpOnly || txn.SameSite != http.SameSiteNoneMode || txn.Path != "/" || txn.Domain != "" {
		t.Errorf("transaction cookie %+v: want Secure, HttpOnly, SameSite=None, Path=/, no Domain", txn)
	}

	// The provider answers with an auto-submitting form.
	page := b.get(ls.reply.Location())
	expectStatus(t, page, http.StatusOK)
	action, fields, ok := testop.ParseFormPost(page.Body)
	if !ok {
		t.Fatalf("no form_post page: %q", page.Body)
	}
	if action != s.base+"/oauth2/callback" || fields.Get("state") != ls.state || fields.Get("code") == "" || fields.Get("iss") != op.Issuer() {
		t.Fatalf("form_post to %q with %v", action, fields)
	}
	// The browser POSTs it cross-site.
	r := b.do(http.MethodPost, action, withHeaders(navigationHeaders,
		"Content-Type", "application/x-www-form-urlencoded",
		"Sec-Fetch-Site", "cross-site", "Origin", op.Issuer()), strings.NewReader(fields.Encode()))
	expectStatus(t, r, http.StatusSeeOther)
	if r.Location() != "/deep?q=1" {
		t.Errorf("callback redirected to %q", r.Location())
	}
	sess := r.SetCookie("__Host-pkce_session")
	if sess == nil {
		t.Fatalf("no __Host-pkce_session cookie in %v", r.Cookies)
	}
	if !sess.Secure || !sess.HttpOnly || sess.SameSite != http.SameSiteLaxMode || sess.Path != "/" || sess.Domain != "" {
		t.Errorf("session cookie %+v: want Secure, HttpOnly, SameSite=Lax, Path=/, no Domain", sess)
	}
	if r.SetCookie("pkce_session") != nil {
		t.Error("an unprefixed session cookie was set over HTTPS")
	}
	s.expectTxnConsumed(t, b, r, ls.state)
	s.expectNoFailure(t)

	page = b.navigate(s.base + "/deep?q=1")
	expectStatus(t, page, http.StatusOK)
	if f := page.Fields(); f["id"] != "alice-sub" || f["cookie"] != "" {
		t.Errorf("upstream saw %v", f)
	}

	// Logout over HTTPS clears the __Host- cookie and sends the https
	// post-logout URI.
	r = b.navigate(s.base+"/oauth2/logout", "Sec-Fetch-Site", "same-origin")
	expectStatus(t, r, http.StatusSeeOther)
	if c := r.SetCookie("__Host-pkce_session"); c == nil || c.MaxAge >= 0 || !c.Secure {
		t.Errorf("logout cookies %v", r.Cookies)
	}
	loc, _ := url.Parse(r.Location())
	if got := loc.Query().Get("post_logout_redirect_uri"); got != s.base+"/" {
		t.Errorf("post_logout_redirect_uri %q, want %s/", got, s.base)
	}

	// A form_post replay after the login is refused: the transaction is gone.
	r = b.do(http.MethodPost, action, withHeaders(navigationHeaders,
		"Content-Type", "application/x-www-form-urlencoded", "Sec-Fetch-Site", "cross-site"), strings.NewReader(fields.Encode()))
	expectStatus(t, r, http.StatusBadRequest)
	s.expectFailureReason(t, "state does not match a live login")
}

// TestIdentityHeadersAndCookies: identity headers come only from the
// session (client-supplied ones are removed), and the module's cookies are
// removed from the upstream request unless keep_cookies is set.
func TestIdentityHeadersAndCookies(t *testing.T) {
	op := testop.New(t, testop.Config{})
	headers := map[string]any{"X-User": "email", "X-Groups": "groups", "X-Missing": "no_such_claim"}
	s := startSite(t, op, siteOptions{auth: map[string]any{"headers": headers}})
	b := newBrowser(t, s)

	// Without a session forged headers get nowhere.
	r := b.do(http.MethodGet, s.base+"/api", withHeaders(fetchHeaders, "X-User", "mallory@evil.example"), nil)
	expectStatus(t, r, http.StatusUnauthorized)

	s.login(t, b, "/")
	b.setCookie(s, "theme", "dark")
	// A pending login (another tab) leaves a transaction cookie.
	b2 := newBrowser(t, s)
	pending := s.startLogin(t, b2, "/")
	b.setCookie(s, s.txnName(pending.state), b2.cookie(s, s.txnName(pending.state)).Value)

	forged := http.Header{
		"X-User":    {"mallory@evil.example", "second@evil.example"},
		"X-Groups":  {"admins"},
		"X-Missing": {"forged"},
	}
	h := fetchHeaders.Clone()
	maps.Copy(h, forged)
	r = b.do(http.MethodGet, s.base+"/api", h, nil)
	expectStatus(t, r, http.StatusOK)
	f := r.Fields()
	if f["x_user"] != "alice@example.com" {
		t.Errorf("upstream X-User %q, want only the session's alice@example.com", f["x_user"])
	}
	if f["x_groups"] != "staff,admins" {
		t.Errorf("upstream X-Groups %q, want staff,admins", f["x_groups"])
	}
	if f["x_missing"] != "" {
		t.Errorf("upstream X-Missing %q: a claim the session lacks must leave the header empty, not the client's value", f["x_missing"])
	}
	if f["cookie"] != "theme=dark" {
		t.Errorf("upstream Cookie %q, want only theme=dark", f["cookie"])
	}

	// Only the module's own cookies go; with none left the header goes.
	b3 := newBrowser(t, s)
	s.login(t, b3, "/")
	r = b3.fetch(s.base + "/api")
	if got := r.Fields()["cookie"]; got != "" {
		t.Errorf("upstream Cookie %q, want none", got)
	}

	// keep_cookies passes them on.
	s.reload(siteOptions{auth: map[string]any{"headers": headers, "keep_cookies": true}})
	r = b.fetch(s.base + "/api")
	expectStatus(t, r, http.StatusOK)
	cookie := r.Fields()["cookie"]
	for _, want := range []string{"theme=dark", "pkce_session=" + b.cookie(s, "pkce_session").Value, s.txnName(pending.state) + "="} {
		if !strings.Contains(cookie, want) {
			t.Errorf("with keep_cookies the upstream Cookie %q lacks %q", cookie, want)
		}
	}
}

// TestConfidentialClient: with a client secret the code exchange
// authenticates with client_secret_basic (default) or client_secret_post,
// and the secret can come from an environment placeholder.
func TestConfidentialClient(t *testing.T) {
	op := testop.New(t, testop.Config{ClientSecret: "s3cret with spaces & symbols"})
	t.Setenv("PKCE_TEST_SECRET", "s3cret with spaces & symbols")
	for _, c := range []struct{ method, want string }{
		{"", "client_secret_basic"},
		{"basic", "client_secret_basic"},
		{"post", "client_secret_post"},
	} {
		t.Run("auth method "+c.want+" "+c.method, func(t *testing.T) {
			auth := map[string]any{"client_secret": "{env.PKCE_TEST_SECRET}"}
			if c.method != "" {
				auth["client_auth_method"] = c.method
			}
			s := startSite(t, op, siteOptions{auth: auth})
			n := len(op.TokenRequests())
			s.login(t, newBrowser(t, s), "/")
			s.expectNoFailure(t)
			trs := op.TokenRequests()
			if len(trs) != n+1 || trs[n].AuthMethod != c.want {
				t.Errorf("token request %+v, want client authentication %s", trs[len(trs)-1], c.want)
			}
			if logs, _ := os.ReadFile(s.logFile); strings.Contains(string(logs), "s3cret") {
				t.Error("the client secret is in the log")
			}
		})
	}
}

// TestAuthorizationRequestParameters: auth_params and forward_auth_params
// reach the authorization request; parameters the flow sets cannot be
// smuggled in from the request.
func TestAuthorizationRequestParameters(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startSite(t, op, siteOptions{auth: map[string]any{
		"auth_params":         map[string]string{"prompt": "login", "acr_values": "mfa"},
		"forward_auth_params": []string{"login_hint", "ui_locales"},
		"scopes":              []string{"email", "groups"},
	}})
	b := newBrowser(t, s)
	ls := s.startLogin(t, b, "/?login_hint=bob%40example.com&redirect_uri=https%3A%2F%2Fevil.example&state=x&code_challenge_method=plain&other=1")
	p := ls.params
	for k, want := range map[string]string{
		"prompt":                "login",
		"acr_values":            "mfa",
		"login_hint":            "bob@example.com",
		"redirect_uri":          s.base + "/oauth2/callback",
		"code_challenge_method": "S256",
		"scope":                 "openid email groups",
	} {
		if got := p[k]; len(got) != 1 || got[0] != want {
			t.Errorf("authorization request %s = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"other", "ui_locales"} {
		if p.Has(k) {
			t.Errorf("authorization request has %s=%q", k, p.Get(k))
		}
	}
	if p.Get("state") == "x" {
		t.Error("state taken from the request")
	}
	r := s.callback(b, s.authorize(t, b, ls))
	expectStatus(t, r, http.StatusSeeOther)
}

// TestCaddyfileConfig runs a login through a config written as a
// Caddyfile, as users write it.
func TestCaddyfileConfig(t *testing.T) {
	op := testop.New(t, testop.Config{})
	port := pickFreePort(t)
	storage := t.TempDir()
	config := caddyfileGlobals(t, storage, "") + fmt.Sprintf(`
http://127.0.0.1:%d {
	pkce_auth {
		issuer %s
		client_id %s
		cookie_secure never
		groups_claim groups
		header X-User email
	}
	respond "user={http.auth.user.id} groups={http.auth.user.groups} x_user={http.request.header.X-User}" 200
}
`, port, op.Issuer(), op.ClientID())
	loadCaddyfile(t, config)

	s := &site{t: t, op: op, port: port, base: fmt.Sprintf("http://127.0.0.1:%d", port), logFile: filepath.Join(t.TempDir(), "none.log")}
	b := newBrowser(t, s)
	s.login(t, b, "/hello")
	r := b.do(http.MethodGet, s.base+"/hello", withHeaders(navigationHeaders, "X-User", "forged"), nil)
	expectStatus(t, r, http.StatusOK)
	if want := "user=alice-sub groups=staff,admins x_user=alice@example.com"; r.Body != want {
		t.Errorf("body %q, want %q", r.Body, want)
	}
	// The generated session key is in the configured storage.
	if _, err := os.Stat(filepath.Join(storage, "pkce_auth", "session_key")); err != nil {
		t.Errorf("no generated session key in storage: %v", err)
	}
}

// TestUserinfo: with userinfo on, claims the ID token lacks (Zitadel,
// Authelia 4.39: a thin ID token) come from the userinfo endpoint, and a
// configured userinfo_endpoint overrides the discovered one.
func TestUserinfo(t *testing.T) {
	op := testop.New(t, testop.Config{})
	op.Misbehave(testop.Misbehaviour{ThinIDToken: true})

	t.Run("discovered endpoint", func(t *testing.T) {
		s := startSite(t, op, siteOptions{auth: map[string]any{"userinfo": true}})
		b := newBrowser(t, s)
		before := op.Counts().Userinfo
		s.login(t, b, "/")
		if n := op.Counts().Userinfo - before; n != 1 {
			t.Errorf("userinfo called %d times, want 1", n)
		}
		f := b.fetch(s.base + "/api").Fields()
		if f["email"] != "alice@example.com" || f["groups"] != "staff,admins" || f["name"] != "Alice Example" {
			t.Errorf("claims from userinfo not merged: %v", f)
		}
	})

	t.Run("without userinfo a thin ID token gives only the id", func(t *testing.T) {
		s := startSite(t, op, siteOptions{})
		b := newBrowser(t, s)
		before := op.Counts().Userinfo
		s.login(t, b, "/")
		if n := op.Counts().Userinfo - before; n != 0 {
			t.Errorf("userinfo called %d times with userinfo off", n)
		}
		f := b.fetch(s.base + "/api").Fields()
		if f["id"] != "alice-sub" || f["email"] != "" || f["groups"] != "" {
			t.Errorf("placeholders %v", f)
		}
	})

	t.Run("configured endpoint", func(t *testing.T) {
		var calls atomic.Int32
		alt := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
				http.Error(w, "no token", http.StatusUnauthorized)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"sub":"alice-sub","email":"alice@internal.example","department":"ops"}`))
		}))
		defer alt.Close()
		s := startSite(t, op, siteOptions{auth: map[string]any{
			"userinfo": true, "userinfo_endpoint": alt.URL + "/userinfo", "claims": []string{"department"},
		}})
		b := newBrowser(t, s)
		before := op.Counts().Userinfo
		s.login(t, b, "/")
		if n := calls.Load(); n != 1 {
			t.Errorf("configured userinfo_endpoint called %d times, want 1", n)
		}
		if n := op.Counts().Userinfo - before; n != 0 {
			t.Errorf("the discovered userinfo endpoint was called %d times despite userinfo_endpoint", n)
		}
		f := b.fetch(s.base + "/api").Fields()
		if f["email"] != "alice@internal.example" || f["claim_department"] != "ops" {
			t.Errorf("claims from the configured userinfo endpoint: %v", f)
		}
	})
}

// TestBehindTLSProxy: Caddy serving plain HTTP behind a TLS-terminating
// proxy. The browser's origin is https, so the redirect URI, the
// post-logout URI and the same-origin check of logout must use https too.
// Caddy learns it from X-Forwarded-Proto when the proxy is listed in
// trusted_proxies, or from cookie_secure always, documented for this case.
func TestBehindTLSProxy(t *testing.T) {
	for _, c := range []struct {
		name string
		opts siteOptions
	}{
		{"trusted proxy", siteOptions{trustedProxies: true}},
		{"cookie_secure always", siteOptions{auth: map[string]any{"cookie_secure": "always"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			op := testop.New(t, testop.Config{})
			s := startSite(t, op, c.opts)
			target, _ := url.Parse(s.base)
			proxy := httptest.NewTLSServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
				r.SetURL(target)
				r.Out.Host = r.In.Host
				r.SetXForwarded()
			}})
			defer proxy.Close()

			// The browser only sees the proxy.
			front := *s
			front.base = proxy.URL
			secure := c.opts.auth["cookie_secure"] == "always"
			front.opts.tls = secure // __Host- cookie names
			b := newBrowser(t, &front)
			b.client.Transport.(*http.Transport).TLSClientConfig.RootCAs = proxyRoots(proxy)

			ls := front.startLogin(t, b, "/page")
			if got, want := ls.params.Get("redirect_uri"), proxy.URL+"/oauth2/callback"; got != want {
				t.Errorf("redirect_uri %q, want the browser's origin %q", got, want)
			}
			if c := ls.reply.SetCookie(front.txnName(ls.state)); c == nil || c.Secure != secure {
				t.Fatalf("transaction cookie %v, want Secure %v", ls.reply.Cookies, secure)
			}
			r := front.callback(b, front.authorize(t, b, ls))
			expectStatus(t, r, http.StatusSeeOther)
			expectStatus(t, b.fetch(proxy.URL+"/api"), http.StatusOK)

			// A plain-HTTP Origin is another origin.
			r = b.do(http.MethodPost, proxy.URL+"/oauth2/logout", withHeaders(navigationHeaders,
				"Sec-Fetch-Site", "", "Origin", strings.Replace(proxy.URL, "https://", "http://", 1)), nil)
			expectStatus(t, r, http.StatusForbidden)

			// A same-origin logout form: the browser sends its https Origin.
			r = b.do(http.MethodPost, proxy.URL+"/oauth2/logout", withHeaders(navigationHeaders,
				"Sec-Fetch-Site", "same-origin", "Origin", proxy.URL), nil)
			expectStatus(t, r, http.StatusSeeOther)
			loc, _ := url.Parse(r.Location())
			if got, want := loc.Query().Get("post_logout_redirect_uri"), proxy.URL+"/"; got != want {
				t.Errorf("post_logout_redirect_uri %q, want %q", got, want)
			}
			if b.cookie(&front, front.sessionName()) != nil {
				t.Error("logout left the session cookie")
			}
		})
	}

	// X-Forwarded-Proto from a client that is not a trusted proxy is
	// ignored.
	op := testop.New(t, testop.Config{})
	s := startSite(t, op, siteOptions{})
	r := newBrowser(t, s).navigate(s.base+"/page", "X-Forwarded-Proto", "https")
	expectStatus(t, r, http.StatusFound)
	loc, _ := url.Parse(r.Location())
	if got, want := loc.Query().Get("redirect_uri"), s.base+"/oauth2/callback"; got != want {
		t.Errorf("untrusted X-Forwarded-Proto: redirect_uri %q, want %q", got, want)
	}
}

func proxyRoots(srv *httptest.Server) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return pool
}

// TestPlaceholdersInMatchers: later routes can match on the identity with
// the expression matcher, e.g. to restrict an area to some users.
func TestPlaceholdersInMatchers(t *testing.T) {
	op := testop.New(t, testop.Config{})
	respond := func(status int, body string) map[string]any {
		return map[string]any{"handler": "static_response", "status_code": status, "body": body}
	}
	s := startSite(t, op, siteOptions{next: []any{map[string]any{
		"handler": "subroute",
		"routes": []any{
			map[string]any{
				"match":    []any{map[string]any{"expression": `{http.auth.user.id} == 'alice-sub' && {http.auth.user.email}.endsWith('@example.com') && {http.auth.user.groups}.contains('admins')`}},
				"handle":   []any{respond(200, "admin area for {http.auth.user.preferred_username}")},
				"terminal": true,
			},
			map[string]any{"handle": []any{respond(403, "not for {http.auth.user.id}")}},
		},
	}}})
	alice := newBrowser(t, s)
	s.login(t, alice, "/admin")
	r := alice.fetch(s.base + "/admin")
	expectStatus(t, r, http.StatusOK)
	if r.Body != "admin area for alice" {
		t.Errorf("body %q", r.Body)
	}

	op.SetUser(testop.User{Subject: "bob-sub", Email: "bob@example.com", Groups: []string{"staff"}})
	bob := newBrowser(t, s)
	s.login(t, bob, "/admin")
	r = bob.fetch(s.base + "/admin")
	expectStatus(t, r, http.StatusForbidden)
	if r.Body != "not for bob-sub" {
		t.Errorf("body %q", r.Body)
	}
	// Without a session the matcher never sees a request.
	expectStatus(t, newBrowser(t, s).fetch(s.base+"/admin"), http.StatusUnauthorized)
}

// TestProviderKeyRotation: after the provider rotates its signing key, ID
// tokens under the new kid verify once the keys are fetched again.
func TestProviderKeyRotation(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startSite(t, op, siteOptions{})
	s.login(t, newBrowser(t, s), "/")
	jwks := op.Counts().JWKS
	op.RotateKeys()
	s.login(t, newBrowser(t, s), "/")
	s.expectNoFailure(t)
	if n := op.Counts().JWKS - jwks; n != 1 {
		t.Errorf("JWKS fetched %d times after the rotation, want 1", n)
	}
	// The cached keys serve the next login.
	s.login(t, newBrowser(t, s), "/")
	if n := op.Counts().JWKS - jwks; n != 1 {
		t.Errorf("JWKS fetched %d times for two logins after the rotation, want 1", n)
	}
}

// TestPKCEMethodChoice: S256 is sent whatever discovery lists, unless
// plain is configured; require_s256_discovery refuses a provider that
// lists methods without S256.
func TestPKCEMethodChoice(t *testing.T) {
	cases := []struct {
		name    string
		mis     testop.Misbehaviour
		auth    map[string]any
		method  string // sent code_challenge_method; "" when no login starts
		logWant string
	}{
		{"methods not listed (Entra ID)", testop.Misbehaviour{NoPKCEMethodsInDiscovery: true}, nil, "S256", ""},
		{"only plain listed", testop.Misbehaviour{PlainOnlyInDiscovery: true}, nil, "S256", "did not list S256 in code_challenge_methods_supported"},
		{"only plain listed, S256 required", testop.Misbehaviour{PlainOnlyInDiscovery: true},
			map[string]any{"require_s256_discovery": true}, "", "refusing to log in because require_s256_discovery is set"},
		{"plain configured", testop.Misbehaviour{AcceptWithoutPKCE: true}, map[string]any{"pkce_method": "plain"}, "plain", "pkce_method plain is configured"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			op := testop.New(t, testop.Config{})
			op.Misbehave(c.mis)
			s := startSite(t, op, siteOptions{auth: c.auth})
			b := newBrowser(t, s)
			if c.method == "" {
				r := b.navigate(s.base + "/")
				expectStatus(t, r, http.StatusServiceUnavailable)
				if !strings.Contains(r.Body, "Sign-in misconfigured") {
					t.Errorf("page %q", r.Body)
				}
				expectNoSetCookie(t, r)
			} else {
				ls := s.startLogin(t, b, "/")
				if got := ls.params.Get("code_challenge_method"); got != c.method {
					t.Errorf("code_challenge_method %q, want %q", got, c.method)
				}
				expectStatus(t, s.callback(b, s.authorize(t, b, ls)), http.StatusSeeOther)
				tr := op.TokenRequests()
				if c.method == "plain" && tr[len(tr)-1].CodeVerifier != ls.params.Get("code_challenge") {
					t.Error("plain: the challenge is not the verifier")
				}
			}
			if c.logWant != "" {
				logs, _ := os.ReadFile(s.logFile)
				if !strings.Contains(string(logs), c.logWant) {
					t.Errorf("log lacks %q", c.logWant)
				}
			}
		})
	}
}

// TestAccessLogUserID: Caddy's access log records {http.auth.user.id} as
// user_id for a signed-in request, and nothing for an anonymous one.
func TestAccessLogUserID(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startSite(t, op, siteOptions{accessLog: true})
	b := newBrowser(t, s)
	expectStatus(t, b.fetch(s.base+"/anonymous"), http.StatusUnauthorized)
	s.login(t, b, "/")
	expectStatus(t, b.fetch(s.base+"/signed-in"), http.StatusOK)

	raw, err := os.ReadFile(s.logFile)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for line := range strings.SplitSeq(string(raw), "\n") {
		var e struct {
			Logger  string `json:"logger"`
			UserID  string `json:"user_id"`
			Request struct {
				URI string `json:"uri"`
			} `json:"request"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && strings.HasPrefix(e.Logger, "http.log.access") {
			got[e.Request.URI] = e.UserID
		}
	}
	if id, ok := got["/signed-in"]; !ok || id != "alice-sub" {
		t.Errorf("access log user_id for /signed-in %q (logged %v), want alice-sub", id, ok)
	}
	if id, ok := got["/anonymous"]; !ok || id != "" {
		t.Errorf("access log user_id for /anonymous %q (logged %v), want empty", id, ok)
	}
}
