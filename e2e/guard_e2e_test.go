package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"golang.org/x/oauth2"

	"github.com/caddy-pkce/caddy-pkce/e2e/demoop"
)

// TestGuardInFrontOfZitadel runs pkce_guard, in the Caddy binary built with
// the plugin, in front of a real independent authorization server: the
// zitadel/oidc `op` package that the demo uses, with two clients.
//
//   - "web" is confidential (client_secret_basic): zitadel makes PKCE
//     optional for it, so its own enforcement is off; the guard must
//     enforce it.
//   - "native" is public: zitadel enforces PKCE itself; the guard must
//     refuse first and pass PKCE clients through.
//
// The provider's issuer is the guard's origin, as in a deployment where
// Caddy is the server's public face, so its login pages and the redirect
// that carries the code go through the guard.
func TestGuardInFrontOfZitadel(t *testing.T) {
	requireGuardModule(t)

	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	issuer := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	const (
		webID, webSecret = "web", "web-secret"
		nativeID         = "native"
		rp               = "http://127.0.0.1:9/cb" // never contacted: the test reads the redirect
		zitadelUser      = "test-user2"            // from the example's user store
		zitadelPassword  = "verysecure"
	)
	st := storage.NewStorageWithClients(storage.NewUserStore(issuer), map[string]*storage.Client{
		webID:    storage.WebClient(webID, webSecret, rp),
		nativeID: storage.NativeClient(nativeID, rp),
	})
	rec := demoop.NewRecorder(exampleop.SetupServer(issuer, st, nil, false))
	upstream := httptest.NewServer(rec)
	defer upstream.Close()

	caddyfile := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(caddyfile, []byte(fmt.Sprintf(`{
	admin off
	persist_config off
}

%s {
	pkce_guard {
		authorization_paths /auth
		token_paths /oauth/token
		redirect_uris web %s
		redirect_uris native %s
	}
	reverse_proxy %s
}
`, issuer, rp, rp, upstream.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	caddy, err := startCaddy(caddyfile, "caddy-guard")
	if err != nil {
		t.Fatal(err)
	}
	defer caddy.Stop()
	if err := caddy.WaitHTTP(t.Context(), issuer+"/.well-known/openid-configuration", 30*time.Second); err != nil {
		t.Fatal(err)
	}

	endpoint := oauth2.Endpoint{AuthURL: issuer + "/auth", TokenURL: issuer + "/oauth/token"}
	web := &oauth2.Config{ClientID: webID, ClientSecret: webSecret, RedirectURL: rp, Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: endpoint.AuthURL, TokenURL: endpoint.TokenURL, AuthStyle: oauth2.AuthStyleInHeader}}
	native := &oauth2.Config{ClientID: nativeID, RedirectURL: rp, Scopes: []string{"openid"},
		Endpoint: oauth2.Endpoint{AuthURL: endpoint.AuthURL, TokenURL: endpoint.TokenURL, AuthStyle: oauth2.AuthStyleInParams}}
	ctx := t.Context()

	// login follows an authorization URL through zitadel's login form and
	// returns the redirect to the client: with a code, or an error.
	login := func(t *testing.T, authURL string) *url.URL {
		t.Helper()
		jar, _ := cookiejar.New(nil)
		client := &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			if strings.HasPrefix(req.URL.String(), rp) {
				return http.ErrUseLastResponse
			}
			return nil
		}}
		resp, err := client.Get(authURL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			id := resp.Request.URL.Query().Get("authRequestID")
			if id == "" {
				t.Fatalf("authorization request: 200 at %s, not the login form", resp.Request.URL)
			}
			resp, err = client.PostForm(issuer+"/login/username", url.Values{"id": {id}, "username": {zitadelUser}, "password": {zitadelPassword}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		loc, err := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(loc.String(), rp) {
			t.Fatalf("got %d to %q, want a redirect to the client", resp.StatusCode, resp.Header.Get("Location"))
		}
		return loc
	}
	// seen counts the requests to path the provider received since mark.
	seen := func(path string, mark int) int {
		n := 0
		for _, e := range rec.Entries(mark) {
			if e.Path == path {
				n++
			}
		}
		return n
	}
	last := func() int {
		if e := rec.Entries(0); len(e) > 0 {
			return e[len(e)-1].Seq
		}
		return 0
	}

	t.Run("zitadel alone issues tokens to the web client without PKCE", func(t *testing.T) {
		// The baseline the guard changes: straight to the upstream, no
		// challenge, no verifier, and the code is accepted.
		direct := *web
		direct.Endpoint.AuthURL = upstream.URL + "/auth"
		direct.Endpoint.TokenURL = upstream.URL + "/oauth/token"
		jar, _ := cookiejar.New(nil)
		client := &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			if strings.HasPrefix(req.URL.String(), rp) || strings.HasPrefix(req.URL.String(), issuer) {
				return http.ErrUseLastResponse // stay off the guard
			}
			return nil
		}}
		resp, err := client.Get(direct.AuthCodeURL("direct"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		id := resp.Request.URL.Query().Get("authRequestID")
		resp, err = client.PostForm(upstream.URL+"/login/username", url.Values{"id": {id}, "username": {zitadelUser}, "password": {zitadelPassword}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// The login redirects to the issuer (the guard's origin); replay
		// the callback on the upstream itself.
		cb, err := url.Parse(resp.Header.Get("Location"))
		if err != nil || cb.Path != "/auth/callback" {
			t.Fatalf("login redirected to %q", resp.Header.Get("Location"))
		}
		resp, err = client.Get(upstream.URL + cb.RequestURI())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if _, err := direct.Exchange(ctx, loc.Query().Get("code")); err != nil {
			t.Fatalf("zitadel refused a code without PKCE for the confidential client (%v); this test assumes its enforcement is off", err)
		}
	})

	for _, conf := range []*oauth2.Config{web, native} {
		t.Run(conf.ClientID+": PKCE S256 through the guard gets tokens", func(t *testing.T) {
			mark := last()
			verifier := oauth2.GenerateVerifier()
			loc := login(t, conf.AuthCodeURL("s1", oauth2.S256ChallengeOption(verifier)))
			tok, err := conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			if tok.AccessToken == "" || tok.Extra("id_token") == nil {
				t.Errorf("no tokens from zitadel: %+v", tok)
			}
			for _, e := range rec.Entries(mark) {
				if got := e.Query["code_challenge"]; e.Path == "/auth" && (len(got) != 1 || got[0] != oauth2.S256ChallengeFromVerifier(verifier)) {
					t.Errorf("zitadel saw code_challenge %q, want the client's, unchanged", got)
				}
			}
		})
		t.Run(conf.ClientID+": without PKCE the guard refuses, zitadel never sees it", func(t *testing.T) {
			mark := last()
			loc := login(t, conf.AuthCodeURL("s2"))
			if q := loc.Query(); q.Get("error") != "invalid_request" || q.Get("state") != "s2" || q.Has("code") {
				t.Errorf("redirect %s, want error=invalid_request from the guard", loc)
			}
			if n := seen("/auth", mark); n != 0 {
				t.Errorf("zitadel saw %d authorization request(s)", n)
			}
		})
		t.Run(conf.ClientID+": a code exchanged without its verifier is refused before zitadel", func(t *testing.T) {
			verifier := oauth2.GenerateVerifier()
			loc := login(t, conf.AuthCodeURL("s3", oauth2.S256ChallengeOption(verifier)))
			mark := last()
			for _, wrong := range []oauth2.AuthCodeOption{oauth2.VerifierOption(oauth2.GenerateVerifier()), oauth2.VerifierOption(verifier)} {
				// The first use, with a wrong verifier, consumes the
				// binding: the right verifier comes too late.
				_, err := conf.Exchange(ctx, loc.Query().Get("code"), wrong)
				var re *oauth2.RetrieveError
				if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
					t.Errorf("Exchange: %v, want invalid_grant from the guard", err)
				}
			}
			if n := seen("/oauth/token", mark); n != 0 {
				t.Errorf("zitadel saw %d token request(s)", n)
			}
		})
	}

	t.Run("discovery through the guard advertises S256 only", func(t *testing.T) {
		resp, err := http.Get(issuer + "/.well-known/openid-configuration")
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		if !regexp.MustCompile(`"code_challenge_methods_supported":\["S256"\]`).Match(buf.Bytes()) ||
			!strings.Contains(buf.String(), `"issuer":"`+issuer+`"`) {
			t.Errorf("discovery: %s", buf.String())
		}
	})
}

// requireGuardModule skips the test when the Caddy under test lacks
// pkce_guard (the root package must import the guard package for
// `xcaddy build --with github.com/caddy-pkce/caddy-pkce` to include it),
// and fails it in CI, where that must not happen.
func requireGuardModule(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, stack.caddyBin, "list-modules").Output()
	if err != nil {
		t.Fatalf("%s list-modules: %v", stack.caddyBin, err)
	}
	if !strings.Contains(string(out), "http.handlers.pkce_guard\n") {
		msg := "the Caddy under test has no http.handlers.pkce_guard: the plugin's root package must import github.com/caddy-pkce/caddy-pkce/guard"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}
