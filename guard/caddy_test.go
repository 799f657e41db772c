package pkceguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"
)

// Caddy runs in this test process (caddytest starts it once); its admin
// endpoint gets a free port rather than caddytest's fixed 2999, so that
// other packages' tests running at the same time cannot load their configs
// into this Caddy or the other way round.
var (
	adminPortOnce sync.Once
	adminPort     int
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startCaddy loads a Caddyfile into the in-process Caddy. sites is the
// part after the global options, which startCaddy writes.
func startCaddy(t *testing.T, storageDir, sites string) {
	t.Helper()
	adminPortOnce.Do(func() { adminPort = freePort(t) })
	config := fmt.Sprintf(`{
	admin localhost:%d
	persist_config off
	http_port %d
	https_port %d
	grace_period 1ns
	skip_install_trust
	storage file_system %s
}
%s`, adminPort, freePort(t), freePort(t), storageDir, sites)
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{
		AdminPort:          adminPort,
		LoadRequestTimeout: 10 * time.Second,
		TestRequestTimeout: 10 * time.Second,
	})
	tester.InitServer(config, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
}

// TestFlowsCaddy runs the flows through Caddy: pkce_guard and
// reverse_proxy to the legacy server, from a Caddyfile, with the cookie key
// generated in Caddy's storage.
func TestFlowsCaddy(t *testing.T) {
	legacy := newLegacyServer()
	upstream := httptest.NewServer(legacy)
	defer upstream.Close()
	port := freePort(t)
	storage := t.TempDir()
	startCaddy(t, storage, fmt.Sprintf(`
http://127.0.0.1:%d {
	reverse_proxy %s
	pkce_guard {
		exempt_clients exempt-app
		redirect_uris public-app https://app.example/cb
		redirect_uris conf-app https://conf.example/cb
		redirect_uris native-app com.example.app:/oauth2redirect
	}
}
`, port, strings.TrimPrefix(upstream.URL, "http://")))

	runFlows(t, &env{base: fmt.Sprintf("http://127.0.0.1:%d", port), legacy: legacy})

	if _, err := os.Stat(filepath.Join(storage, "pkce_guard", "cookie_key")); err != nil {
		t.Errorf("the cookie key was not created in Caddy's storage: %v", err)
	}
}

// TestOAuth2Library runs golang.org/x/oauth2, a real OAuth client library,
// through Caddy: with PKCE it gets tokens, without it it is refused.
func TestOAuth2Library(t *testing.T) {
	legacy := newLegacyServer()
	upstream := httptest.NewServer(legacy)
	defer upstream.Close()
	port := freePort(t)
	startCaddy(t, t.TempDir(), fmt.Sprintf(`
http://127.0.0.1:%d {
	pkce_guard {
		redirect_uris public-app https://app.example/cb
		redirect_uris conf-app https://conf.example/cb
	}
	reverse_proxy %s
}
`, port, strings.TrimPrefix(upstream.URL, "http://")))
	e := &env{base: fmt.Sprintf("http://127.0.0.1:%d", port), legacy: legacy}
	ctx := context.Background()

	public := &oauth2.Config{
		ClientID:    publicApp,
		RedirectURL: publicAppCB,
		Scopes:      []string{"openid"},
		Endpoint:    oauth2.Endpoint{AuthURL: e.base + "/authorize", TokenURL: e.base + "/oauth/token", AuthStyle: oauth2.AuthStyleInParams},
	}
	confidential := &oauth2.Config{
		ClientID:     confApp,
		ClientSecret: confAppSecret,
		RedirectURL:  confAppCB,
		Endpoint:     oauth2.Endpoint{AuthURL: e.base + "/authorize", TokenURL: e.base + "/oauth/token", AuthStyle: oauth2.AuthStyleInHeader},
	}
	// login follows an authorization URL made by the library through the
	// login page and returns the redirect to the client.
	login := func(t *testing.T, authURL string) *url.URL {
		t.Helper()
		b := newBrowser(t, e)
		req, _ := http.NewRequest(http.MethodGet, authURL, nil)
		resp, body := b.do(req)
		if resp.StatusCode != http.StatusOK {
			return location(t, resp, http.StatusFound)
		}
		return location(t, b.signIn(body), http.StatusFound)
	}

	for _, conf := range []*oauth2.Config{public, confidential} {
		t.Run(conf.ClientID+" with PKCE gets tokens", func(t *testing.T) {
			verifier := oauth2.GenerateVerifier()
			loc := login(t, conf.AuthCodeURL("state-1", oauth2.S256ChallengeOption(verifier)))
			if loc.Query().Get("state") != "state-1" {
				t.Fatalf("redirect %s", loc)
			}
			tok, err := conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			if !strings.HasPrefix(tok.AccessToken, "at-") {
				t.Errorf("access token %q is not the legacy server's", tok.AccessToken)
			}
		})
		t.Run(conf.ClientID+" without PKCE is refused", func(t *testing.T) {
			before := legacy.count("/authorize")
			loc := login(t, conf.AuthCodeURL("state-2"))
			if q := loc.Query(); q.Get("error") != "invalid_request" || q.Get("state") != "state-2" || q.Has("code") {
				t.Errorf("got redirect %s, want error=invalid_request", loc)
			}
			unchanged(t, e, "/authorize", before)
		})
		t.Run(conf.ClientID+" exchanging without the verifier is refused", func(t *testing.T) {
			verifier := oauth2.GenerateVerifier()
			loc := login(t, conf.AuthCodeURL("state-3", oauth2.S256ChallengeOption(verifier)))
			before := legacy.count("/oauth/token")
			_, err := conf.Exchange(ctx, loc.Query().Get("code"))
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || re.Response.StatusCode != http.StatusBadRequest {
				t.Errorf("Exchange without verifier: %v, want invalid_grant", err)
			}
			unchanged(t, e, "/oauth/token", before)
		})
	}
}

// TestSharedStores runs two guards, as two Caddy instances behind a load
// balancer would be, sharing a store: the authorization request goes to
// instance A, the login (without A's cookie) to B, the token request to A
// again. Each store must carry the pending request and the code binding
// between them.
func TestSharedStores(t *testing.T) {
	stores := map[string]func(t *testing.T) (caddyfileBlock string, check func(t *testing.T)){
		"storage": func(t *testing.T) (string, func(t *testing.T)) {
			return "store storage", func(t *testing.T) {}
		},
		"redis": func(t *testing.T) (string, func(t *testing.T)) {
			addr, password := startRedis(t)
			t.Setenv("PKCE_GUARD_TEST_REDIS_PASSWORD", password)
			block := fmt.Sprintf("store redis {\n\t\t\taddresses %s\n\t\t\tpassword {env.PKCE_GUARD_TEST_REDIS_PASSWORD}\n\t\t\tkey_prefix shared:\n\t\t}", addr)
			return block, func(t *testing.T) {
				rdb := redis.NewClient(&redis.Options{Addr: addr, Password: password})
				defer rdb.Close()
				keys, err := rdb.Keys(context.Background(), "shared:state:*").Result()
				if err != nil || len(keys) == 0 {
					t.Errorf("no pending request in Redis under shared:state:* (%v)", err)
				}
			}
		},
	}
	for name, setup := range stores {
		t.Run(name, func(t *testing.T) {
			block, check := setup(t)
			legacy := newLegacyServer()
			upstream := httptest.NewServer(legacy)
			defer upstream.Close()
			portA, portB := freePort(t), freePort(t)
			site := `
http://127.0.0.1:%d {
	pkce_guard {
		redirect_uris public-app https://app.example/cb
		cookie_keys ` + testCookieKey + `
		%s
	}
	reverse_proxy %s
}
`
			up := strings.TrimPrefix(upstream.URL, "http://")
			storage := t.TempDir()
			startCaddy(t, storage, fmt.Sprintf(site, portA, block, up)+fmt.Sprintf(site, portB, block, up))
			a := &env{base: fmt.Sprintf("http://127.0.0.1:%d", portA), legacy: legacy}
			b := &env{base: fmt.Sprintf("http://127.0.0.1:%d", portB), legacy: legacy}

			q, v := s256Params(publicApp, publicAppCB, "st-shared")
			_, page := newBrowser(t, a).authorize(q)
			check(t)
			code := codeOf(location(t, newBrowser(t, b).signIn(page), http.StatusFound))
			wantTokens(t, a.token(t, codeForm(publicApp, publicAppCB, code, v)))
			wantTokenError(t, b.token(t, codeForm(publicApp, publicAppCB, code, v)), "invalid_grant", "already used")
			if name == "storage" {
				if _, err := os.Stat(filepath.Join(storage, "pkce_guard", "bindings")); err != nil {
					t.Errorf("nothing was kept in Caddy's storage: %v", err)
				}
			}
		})
	}
}
