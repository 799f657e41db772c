package demoop

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// TestLoginWithPKCE walks the provider through a login as a relying party
// would, without a browser: it proves the demo client, user, groups claim,
// PKCE check and post-logout redirect are set up the way the demo and the
// end-to-end tests rely on.
func TestLoginWithPKCE(t *testing.T) {
	const rpOrigin = "http://127.0.0.1:18080"
	var handler http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	defer srv.Close()
	h, err := New(Config{
		Issuer:                 srv.URL,
		RedirectURIs:           []string{rpOrigin + "/oauth2/callback"},
		PostLogoutRedirectURIs: []string{rpOrigin + "/"},
		Logger:                 slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := NewRecorder(h)
	handler = rec

	conf := &oauth2.Config{
		ClientID:    "demo",
		RedirectURL: rpOrigin + "/oauth2/callback",
		Scopes:      []string{"openid", "email", "profile"},
		Endpoint:    oauth2.Endpoint{AuthURL: srv.URL + "/auth", TokenURL: srv.URL + "/oauth/token", AuthStyle: oauth2.AuthStyleInParams},
	}
	verifier := oauth2.GenerateVerifier()
	authURL := conf.AuthCodeURL("state-1", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", "nonce-1"))

	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), rpOrigin) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := client.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := resp.Request.URL.Query().Get("authRequestID")
	if resp.StatusCode != http.StatusOK || id == "" {
		t.Fatalf("authorization request: got %d at %s, want the login form", resp.StatusCode, resp.Request.URL)
	}

	// wrong password: stays on the form
	resp, err = client.PostForm(srv.URL+"/login/username", url.Values{"id": {id}, "username": {DemoUser.Username}, "password": {"wrong"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/login/username" {
		t.Fatalf("wrong password: got %d at %s, want the login form again", resp.StatusCode, resp.Request.URL)
	}

	resp, err = client.PostForm(srv.URL+"/login/username", url.Values{"id": {id}, "username": {DemoUser.Username}, "password": {DemoUser.Password}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc.String(), conf.RedirectURL) {
		t.Fatalf("login: got %d to %q, want a redirect to %s", resp.StatusCode, loc, conf.RedirectURL)
	}
	if got := loc.Query().Get("state"); got != "state-1" {
		t.Fatalf("state = %q", got)
	}
	code := loc.Query().Get("code")

	// a wrong verifier is refused
	if _, err := conf.Exchange(t.Context(), code, oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil {
		t.Fatal("token request with a wrong code_verifier succeeded")
	}
	// the failed exchange above did not consume the code
	tok, err := conf.Exchange(t.Context(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	claims := jwtClaims(t, rawID)
	for k, want := range map[string]any{"sub": DemoUser.ID, "email": DemoUser.Email, "name": "Demo User", "nonce": "nonce-1", "iss": srv.URL} {
		if claims[k] != want {
			t.Errorf("ID token %s = %v, want %v", k, claims[k], want)
		}
	}
	if g, _ := json.Marshal(claims["groups"]); string(g) != `["demo","staff"]` {
		t.Errorf("ID token groups = %s", g)
	}

	// RP-initiated logout returns to the registered post-logout URI
	q := url.Values{"id_token_hint": {rawID}, "client_id": {"demo"}, "post_logout_redirect_uri": {rpOrigin + "/"}}
	resp, err = client.Get(srv.URL + "/end_session?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || got != rpOrigin+"/" {
		t.Fatalf("end_session: got %d to %q, want 302 to %s/", resp.StatusCode, got, rpOrigin)
	}

	// the recorder saw the PKCE parameters on both sides
	var challenge, method, goodVerifier string
	for _, e := range rec.Entries(0) {
		switch e.Path {
		case "/auth":
			challenge, method = first(e.Query["code_challenge"]), first(e.Query["code_challenge_method"])
		case "/oauth/token":
			if e.Status == http.StatusOK {
				goodVerifier = first(e.Form["code_verifier"])
			}
		case "/login/username":
			if p := first(e.Form["password"]); e.Method == http.MethodPost && p != "[redacted]" {
				t.Errorf("recorded password %q, want it redacted", p)
			}
		}
	}
	sum := sha256.Sum256([]byte(goodVerifier))
	if method != "S256" || challenge != base64.RawURLEncoding.EncodeToString(sum[:]) {
		t.Errorf("recorded challenge %q (%s) does not match verifier %q", challenge, method, goodVerifier)
	}
	if n := len(rec.Entries(rec.Entries(0)[1].Seq)); n != len(rec.Entries(0))-2 {
		t.Errorf("Entries(since) returned %d entries", n)
	}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func jwtClaims(t *testing.T, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
