package e2e

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/caddy-pkce/caddy-pkce/e2e/demoop"
)

var (
	user     = demoop.DemoUser.Username
	password = demoop.DemoUser.Password
)

// logIn opens a protected URL, expects the provider's login form, types the
// demo user's credentials and expects to be back on exactly that URL.
func logIn(t *testing.T, tb *tab, target string) {
	t.Helper()
	tb.open(target)
	tb.waitLoginForm()
	tb.typeCredentials(user, password)
	tb.waitURL("the page originally asked for, "+target, func(u string) bool { return u == target })
}

// A protected deep link sends the browser to the provider's login form; after
// the login it comes back to exactly that URL, query string included, and the
// page shows who is logged in. On the wire, the authorization request carried
// an S256 code_challenge that the code_verifier at the token endpoint matches.
func TestLoginReturnsToDeepLink(t *testing.T) {
	b := newBrowser(t)
	tb := b.tab()
	mark := opMark(t)

	const query = "from=e2e&greeting=hello%20world&empty=&path=%2Fa%2Fb"
	target := stack.site + "/deep/page.html?" + query
	tb.open(target)
	tb.waitLoginForm()
	cookies := tb.cookies()
	if _, ok := cookies["pkce_session"]; ok {
		t.Error("a session cookie exists before the login")
	}
	if !hasCookiePrefix(cookies, "pkce_txn_") {
		t.Errorf("no pkce_txn_ transaction cookie while at the login form; cookies: %v", cookieNames(cookies))
	}

	tb.typeCredentials(user, password)
	tb.waitURL("the deep link "+target, func(u string) bool { return u == target })
	if got := tb.text("query"); got != query {
		t.Errorf("the page saw the query string %q, want %q", got, query)
	}
	if got := tb.text("path"); got != "/deep/page.html" {
		t.Errorf("the page saw the path %q", got)
	}
	if got := tb.text("email"); got != demoop.DemoUser.Email {
		t.Errorf("{http.auth.user.email} = %q, want %q", got, demoop.DemoUser.Email)
	}

	cookies = tb.cookies()
	session, ok := cookies["pkce_session"]
	switch {
	case !ok:
		t.Errorf("no pkce_session cookie after the login; cookies: %v", cookieNames(cookies))
	case !session.HTTPOnly || session.SameSite != network.CookieSameSiteLax || session.Path != "/":
		t.Errorf("session cookie: HttpOnly=%v SameSite=%q Path=%q, want HttpOnly, Lax, /", session.HTTPOnly, session.SameSite, session.Path)
	}
	if hasCookiePrefix(cookies, "pkce_txn_") {
		t.Errorf("the transaction cookie outlived the callback; cookies: %v", cookieNames(cookies))
	}

	checkPKCEOnWire(t, opRecorded(t, mark))

	// The home page shows the placeholders through the templates handler.
	tb.open(stack.site + "/")
	for id, want := range map[string]string{
		"name":    demoop.DemoUser.FirstName + " " + demoop.DemoUser.LastName,
		"email":   demoop.DemoUser.Email,
		"groups":  strings.Join(demoop.DemoUser.Groups, ","),
		"user-id": demoop.DemoUser.ID,
	} {
		if got := tb.text(id); got != want {
			t.Errorf("home page #%s = %q, want %q", id, got, want)
		}
	}
}

// checkPKCEOnWire checks what the provider recorded for one login.
func checkPKCEOnWire(t *testing.T, entries []demoop.Entry) {
	t.Helper()
	authPath, tokenPath := opPath(t, "authorization_endpoint"), opPath(t, "token_endpoint")
	redirectURI := stack.site + "/oauth2/callback"

	var auth []demoop.Entry
	for _, e := range entries {
		if e.Path == authPath {
			auth = append(auth, e)
		}
	}
	if len(auth) != 1 {
		t.Fatalf("the provider saw %d authorization requests, want 1", len(auth))
	}
	q := url.Values(auth[0].Query)
	challenge := q.Get("code_challenge")
	for name, want := range map[string]string{
		"code_challenge_method": "S256",
		"response_type":         "code",
		"client_id":             "demo",
		"redirect_uri":          redirectURI,
	} {
		if got := q.Get(name); got != want {
			t.Errorf("authorization request %s = %q, want %q", name, got, want)
		}
	}
	if !regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`).MatchString(challenge) {
		t.Errorf("code_challenge %q is not 43 characters of base64url", challenge)
	}
	if q.Get("state") == "" || q.Get("nonce") == "" {
		t.Errorf("authorization request without state or nonce: %v", q)
	}
	if !strings.Contains(" "+q.Get("scope")+" ", " openid ") {
		t.Errorf("scope %q lacks openid", q.Get("scope"))
	}

	// The provider's redirect back to Caddy carries the code and the state.
	var code string
	for _, e := range entries {
		if strings.HasPrefix(e.Location, redirectURI+"?") {
			u, _ := url.Parse(e.Location)
			if u.Query().Get("state") != q.Get("state") {
				t.Errorf("the provider redirected with state %q, want %q", u.Query().Get("state"), q.Get("state"))
			}
			code = u.Query().Get("code")
		}
	}
	if code == "" {
		t.Fatalf("the provider never redirected to %s with a code", redirectURI)
	}

	var token *demoop.Entry
	for i, e := range entries {
		if e.Path == tokenPath && e.Method == http.MethodPost && url.Values(e.Form).Get("code") == code {
			token = &entries[i]
		}
	}
	if token == nil {
		t.Fatal("the provider saw no token request for the code")
	}
	form := url.Values(token.Form)
	verifier := form.Get("code_verifier")
	if !regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`).MatchString(verifier) {
		t.Errorf("code_verifier %q is not 43-128 unreserved characters (RFC 7636)", verifier)
	}
	sum := sha256.Sum256([]byte(verifier))
	if got := base64.RawURLEncoding.EncodeToString(sum[:]); got != challenge {
		t.Errorf("BASE64URL(SHA256(code_verifier)) = %q, but the code_challenge was %q", got, challenge)
	}
	if form.Get("grant_type") != "authorization_code" || form.Get("redirect_uri") != redirectURI {
		t.Errorf("token request grant_type=%q redirect_uri=%q", form.Get("grant_type"), form.Get("redirect_uri"))
	}
	if form.Has("client_secret") {
		t.Error("a public client sent a client_secret")
	}
	if token.Status != http.StatusOK {
		t.Errorf("the provider answered the token request with %d, want 200", token.Status)
	}
}

// Reloading a page, and opening another one, uses the session: the browser
// does not go back to the provider.
func TestReloadStaysLoggedIn(t *testing.T) {
	b := newBrowser(t)
	tb := b.tab()
	logIn(t, tb, stack.site+"/")
	mark := opMark(t)

	tb.do("reloading", chromedp.Reload())
	if got := tb.text("email"); got != demoop.DemoUser.Email {
		t.Errorf("after a reload the page shows %q, want %q", got, demoop.DemoUser.Email)
	}
	tb.open(stack.site + "/deep/page.html?again=1")
	if got := tb.text("query"); got != "again=1" {
		t.Errorf("another page shows %q", got)
	}
	if loc := tb.location(); loc != stack.site+"/deep/page.html?again=1" {
		t.Errorf("the browser ended at %s", loc)
	}
	for _, e := range opRecorded(t, mark) {
		// The browser may still fetch the login page's favicon late.
		if e.Path != "/favicon.ico" {
			t.Errorf("the browser went back to the provider: %s %s", e.Method, e.Path)
		}
	}
}

// A script's fetch() without a session gets 401 with WWW-Authenticate, not a
// redirect to the provider; with a session it gets the page.
func TestFetchGets401WithoutSession(t *testing.T) {
	b := newBrowser(t)
	tb := b.tab()
	tb.open(stack.site + "/public/")
	if got := tb.text("public"); got == "" {
		t.Fatal("the public page did not render")
	}
	mark := opMark(t)

	res := tb.fetch("/deep/page.html?api=1")
	if res.Error != "" {
		t.Fatalf("fetch() without a session failed: %s (a redirect to the provider would fail CORS like this)", res.Error)
	}
	if res.Status != http.StatusUnauthorized || res.Redirected {
		t.Errorf("fetch() without a session: status %d, redirected %v; want 401, not redirected", res.Status, res.Redirected)
	}
	if !strings.HasPrefix(res.WWWAuthenticate, "Bearer") {
		t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", res.WWWAuthenticate)
	}
	if hasCookiePrefix(tb.cookies(), "pkce_txn_") {
		t.Error("fetch() without a session started a login (a pkce_txn_ cookie was set)")
	}
	for _, e := range opRecorded(t, mark) {
		t.Errorf("fetch() without a session reached the provider: %s %s", e.Method, e.Path)
	}

	logIn(t, tb, stack.site+"/")
	res = tb.fetch("/deep/page.html?api=1")
	if res.Error != "" || res.Status != http.StatusOK || res.Redirected {
		t.Errorf("fetch() with the session: status %d, redirected %v, error %q; want 200", res.Status, res.Redirected, res.Error)
	}
}

// Two tabs that start a login at the same time both end on their own page.
func TestTwoTabsLogInAtOnce(t *testing.T) {
	b := newBrowser(t)
	tabs := []*tab{b.tab(), b.newTab()}
	targets := []string{stack.site + "/deep/page.html?tab=1", stack.site + "/deep/page.html?tab=2"}

	parallel(t, "opening the protected pages", func(i int) error {
		return chromeDo(tabs[i], chromedp.Navigate(targets[i]))
	}, len(tabs))
	for _, tb := range tabs {
		tb.waitLoginForm()
	}
	if n := countCookiePrefix(tabs[0].cookies(), "pkce_txn_"); n != 2 {
		t.Errorf("%d transaction cookies while both logins are pending, want 2", n)
	}

	parallel(t, "logging in", func(i int) error {
		if err := waitLoaded(tabs[i]); err != nil {
			return err
		}
		return chromeDo(tabs[i],
			chromedp.SendKeys(chromedp.ID("username"), user),
			chromedp.SendKeys(chromedp.ID("password"), password),
			chromedp.Click(chromedp.CSS(`button[type="submit"]`), chromedp.NodeVisible))
	}, len(tabs))
	for i, tb := range tabs {
		tb.waitURL("the tab's own page "+targets[i], func(u string) bool { return u == targets[i] })
		if got, want := tb.text("query"), "tab="+string(rune('1'+i)); got != want {
			t.Errorf("%s shows %q, want %q", tb.name, got, want)
		}
	}
}

// Logging out clears the session, visits the provider's end_session endpoint
// (with client_id, no id_token_hint in cookie mode) and a protected page then
// asks for the login again.
func TestLogout(t *testing.T) {
	b := newBrowser(t)
	tb := b.tab()
	logIn(t, tb, stack.site+"/")
	mark := opMark(t)

	tb.click("logout")
	// The provider sends the browser back to /, which needs a login again.
	tb.waitLoginForm()
	if _, ok := tb.cookies()["pkce_session"]; ok {
		t.Error("the session cookie survived the logout")
	}

	endPath := opPath(t, "end_session_endpoint")
	var visits []demoop.Entry
	for _, e := range opRecorded(t, mark) {
		if e.Path == endPath {
			visits = append(visits, e)
		}
	}
	if len(visits) != 1 {
		t.Fatalf("the provider's end_session endpoint was visited %d times, want 1", len(visits))
	}
	q := url.Values(visits[0].Query)
	// The demo keeps sessions in the cookie, which by default does not
	// carry the ID token (session.store_id_token): the logout names the
	// client instead, and the provider must accept that.
	if q.Get("id_token_hint") != "" {
		t.Error("end_session with id_token_hint: the cookie-mode session carried the ID token")
	}
	if got := q.Get("client_id"); got != "demo" {
		t.Errorf("end_session client_id = %q", got)
	}
	if got := q.Get("post_logout_redirect_uri"); got != stack.site+"/" {
		t.Errorf("post_logout_redirect_uri = %q, want %q", got, stack.site+"/")
	}
	if visits[0].Status != http.StatusFound || visits[0].Location != stack.site+"/" {
		t.Errorf("the provider answered end_session with %d to %q, want a redirect to %s/ (it refused the logout request?)",
			visits[0].Status, visits[0].Location, stack.site)
	}

	tb.open(stack.site + "/deep/page.html?after=logout")
	tb.waitLoginForm()
}

// A session cookie that was tampered with leads back to the login, not to an
// error, and logging in again works.
func TestTamperedSessionCookie(t *testing.T) {
	tamper := map[string]func(string) string{
		"one character changed": func(v string) string {
			i := len(v) / 2
			c := byte('A')
			if v[i] == 'A' {
				c = 'B'
			}
			return v[:i] + string(c) + v[i+1:]
		},
		"truncated": func(v string) string { return v[:len(v)-10] },
		"garbage":   func(string) string { return "not-a-sealed-session" },
	}
	b := newBrowser(t)
	tb := b.tab()
	logIn(t, tb, stack.site+"/")
	for name, change := range tamper {
		session, ok := tb.cookies()["pkce_session"]
		if !ok {
			t.Fatalf("%s: no session cookie to tamper with", name)
		}
		tb.setCookie(session, change(session.Value))
		target := stack.site + "/deep/page.html?tampered=" + url.QueryEscape(name)
		tb.open(target)
		tb.waitLoginForm()
		tb.typeCredentials(user, password)
		tb.waitURL("the page after logging in again", func(u string) bool { return u == target })
	}
}

// A wrong password keeps the user at the provider, with no session; the
// right one then completes the login.
func TestWrongPasswordStaysAtProvider(t *testing.T) {
	b := newBrowser(t)
	tb := b.tab()
	tb.open(stack.site + "/")
	tb.waitLoginForm()
	mark := opMark(t)

	tb.typeCredentials(user, "not-the-password")
	waitBodyText(t, tb, "wrong")
	if loc := tb.location(); !onLoginForm(loc) {
		t.Errorf("after a wrong password the browser is at %s, want the provider's login form", loc)
	}
	if _, ok := tb.cookies()["pkce_session"]; ok {
		t.Error("a wrong password produced a session cookie")
	}
	tokenPath := opPath(t, "token_endpoint")
	for _, e := range opRecorded(t, mark) {
		if e.Path == tokenPath || strings.HasPrefix(e.Location, stack.site) {
			t.Errorf("after a wrong password the provider saw %s %s (-> %s)", e.Method, e.Path, e.Location)
		}
	}

	tb.typeCredentials(user, password)
	tb.waitURL("the home page", func(u string) bool { return u == stack.site+"/" })
	if got := tb.text("email"); got != demoop.DemoUser.Email {
		t.Errorf("home page shows %q", got)
	}
}

func waitBodyText(t *testing.T, tb *tab, want string) {
	t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for {
		body := get(tb, "reading the page", chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		if strings.Contains(body, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page never showed %q; it shows %q", want, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hasCookiePrefix(cookies map[string]*network.Cookie, prefix string) bool {
	return countCookiePrefix(cookies, prefix) > 0
}

func countCookiePrefix(cookies map[string]*network.Cookie, prefix string) int {
	n := 0
	for name := range cookies {
		if strings.HasPrefix(name, prefix) {
			n++
		}
	}
	return n
}

func cookieNames(cookies map[string]*network.Cookie) []string {
	var names []string
	for name := range cookies {
		names = append(names, name)
	}
	return names
}
