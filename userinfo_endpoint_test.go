package pkceauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/caddy-pkce/caddy-pkce/internal/testop"
)

// jwtShape matches anything that looks like a JWT (ID and access tokens of
// the test provider are JWTs).
var jwtShape = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.`)

// TestUserinfoEndpoint: /oauth2/userinfo answers the session's identity as
// JSON, never a token; without a session 401 JSON, never a redirect, even
// for a navigation or with handle_errors; GET and HEAD only.
func TestUserinfoEndpoint(t *testing.T) {
	op := testop.New(t, testop.Config{})
	op.SetUser(testop.User{Subject: "alice-sub", Email: "alice@example.com", EmailVerified: true, Name: "Alice Example",
		PreferredUsername: "alice", Groups: []string{"staff", "admins"}, Extra: map[string]any{"department": "ops"}})
	s := startSite(t, op, siteOptions{handleErrors: true, auth: map[string]any{
		"claims":            []string{"department"},
		"pass_access_token": "Authorization", // the access token is in the session
	}, next: []any{map[string]any{"handler": "static_response", "body": "{http.request.header.Authorization}"}}})
	b := newBrowser(t, s)

	for name, r := range map[string]*reply{
		"fetch":      b.fetch(s.base + "/oauth2/userinfo"),
		"navigation": b.navigate(s.base + "/oauth2/userinfo"),
	} {
		if r.Status != http.StatusUnauthorized || r.Location() != "" {
			t.Errorf("%s without a session: %s; want 401, no redirect", name, r)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" || !strings.Contains(r.Body, `"status":401`) {
			t.Errorf("%s without a session: Content-Type %q body %q; want the JSON error (not handle_errors)", name, ct, r.Body)
		}
		if r.Header.Get("WWW-Authenticate") == "" || r.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s without a session: headers %v; want WWW-Authenticate and Cache-Control no-store", name, r.Header)
		}
		expectNoSetCookie(t, r)
	}

	s.login(t, b, "/")
	r := b.fetch(s.base + "/oauth2/userinfo")
	expectStatus(t, r, http.StatusOK)
	for k, want := range map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("%s %q, want %q", k, got, want)
		}
	}
	for k := range r.Header {
		if strings.HasPrefix(k, "Access-Control-") {
			t.Errorf("CORS header %s sent", k)
		}
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(r.Body), &body); err != nil {
		t.Fatalf("body %q: %v", r.Body, err)
	}
	want := map[string]any{
		"id": "alice-sub", "sub": "alice-sub", "email": "alice@example.com", "email_verified": true,
		"name": "Alice Example", "preferred_username": "alice", "groups": []any{"staff", "admins"},
		"claims": map[string]any{
			"sub": "alice-sub", "email": "alice@example.com", "email_verified": "true", "name": "Alice Example",
			"preferred_username": "alice", "groups": "staff,admins", "department": "ops",
		},
	}
	if !reflect.DeepEqual(body, want) {
		t.Errorf("userinfo\n%v\nwant\n%v", body, want)
	}
	// The session holds the access token (the upstream gets it), and the
	// ID token (for logout); userinfo shows neither.
	bearer := strings.TrimPrefix(b.fetch(s.base+"/api").Body, "Bearer ")
	if !jwtShape.MatchString(bearer) {
		t.Fatalf("upstream got Authorization %q; want the access token", bearer)
	}
	if jwtShape.MatchString(r.Body) || strings.Contains(r.Body, bearer) || strings.Contains(r.Body, "token") {
		t.Errorf("userinfo shows a token: %s", r.Body)
	}

	head := b.do(http.MethodHead, s.base+"/oauth2/userinfo", fetchHeaders, nil)
	if head.Status != http.StatusOK || head.Body != "" || head.Header.Get("Content-Type") != "application/json" {
		t.Errorf("HEAD: %s", head)
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		r := b.do(m, s.base+"/oauth2/userinfo", fetchHeaders, strings.NewReader("{}"))
		if r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "GET, HEAD" || !strings.Contains(r.Body, `"status":405`) {
			t.Errorf("%s: %s; want 405 JSON with Allow: GET, HEAD", m, r)
		}
	}
}

// TestUserinfoEndpointPath: userinfo_path moves the endpoint; off (or "")
// hands the path to the upstream like any other.
func TestUserinfoEndpointPath(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startSite(t, op, siteOptions{auth: map[string]any{"userinfo_path": "/api/me"}})
	b := newBrowser(t, s)
	expectStatus(t, b.navigate(s.base+"/api/me"), http.StatusUnauthorized)
	s.login(t, b, "/")
	if r := b.fetch(s.base + "/api/me"); r.Status != http.StatusOK || !strings.Contains(r.Body, `"id":"alice-sub"`) {
		t.Errorf("userinfo at /api/me: %s", r)
	}
	if r := b.fetch(s.base + "/oauth2/userinfo"); !strings.HasPrefix(r.Body, "id=alice-sub") {
		t.Errorf("the default path is still the endpoint: %s", r)
	}
	for _, off := range []string{"off", ""} {
		s.reload(siteOptions{auth: map[string]any{"userinfo_path": off}})
		if r := b.fetch(s.base + "/oauth2/userinfo"); r.Status != http.StatusOK || !strings.HasPrefix(r.Body, "id=alice-sub") {
			t.Errorf("userinfo_path %q: %s; want the upstream", off, r)
		}
		if r := newBrowser(t, s).navigate(s.base + "/oauth2/userinfo"); r.Status != http.StatusFound {
			t.Errorf("userinfo_path %q, navigation without session: %s; want the login redirect", off, r)
		}
	}
}

// TestUserinfoEmptyIdentity: a thin identity still has every field the
// app reads, groups and claims as empty (not null).
func TestUserinfoEmptyIdentity(t *testing.T) {
	p := &PKCEAuth{}
	w := httptest.NewRecorder()
	a := p.activate(&session{UserID: "u", Subject: "s"})
	if err := p.serveUserinfo(w, httptest.NewRequest(http.MethodGet, "/oauth2/userinfo", nil), a); err != nil {
		t.Fatal(err)
	}
	if want := `{"id":"u","sub":"s","email_verified":false,"groups":[],"claims":{}}`; w.Body.String() != want {
		t.Errorf("body %s, want %s", w.Body, want)
	}
}
