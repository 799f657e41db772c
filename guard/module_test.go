package pkceguard

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
)

// TestProvisionDefaults checks the defaults Provision sets.
func TestProvisionDefaults(t *testing.T) {
	g, _ := newGuard(t, `{}`)
	if len(g.Methods) != 1 || g.Methods[0] != methodS256 {
		t.Errorf("methods default %v, want [S256]", g.Methods)
	}
	if g.MinVerifierLength != 43 || g.MaxVerifierLength != 128 {
		t.Errorf("verifier length default %d..%d, want 43..128", g.MinVerifierLength, g.MaxVerifierLength)
	}
	if g.BindingLifetime != caddy.Duration(defaultBindingLifetime) {
		t.Errorf("binding_lifetime default %v", g.BindingLifetime)
	}
	if _, ok := g.store.(*MemoryStore); !ok {
		t.Errorf("store default %T, want memory", g.store)
	}
	if len(g.AuthorizationPaths) == 0 || len(g.TokenPaths) == 0 || len(g.DiscoveryPaths) == 0 {
		t.Error("path defaults not set")
	}
}

// TestValidate is the table of configuration errors.
func TestValidate(t *testing.T) {
	for config, wantErr := range map[string]string{
		`{"methods":["S512"]}`:                                 `unknown code_challenge_method "S512"`,
		`{"min_verifier_length":42}`:                           "min_verifier_length 42 is outside 43..128",
		`{"max_verifier_length":129}`:                          "max_verifier_length 129",
		`{"min_verifier_length":100,"max_verifier_length":50}`: "max_verifier_length 50 must be between",
		`{"binding_lifetime":-1}`:                              "binding_lifetime",
		`{"authorization_paths":["authorize"]}`:                "must start with / or *",
		`{"cookie_keys":["short"]}`:                            "cookie_keys[0] is 5 characters",
		`{"cookie_keys":["{env.PKCE_GUARD_TEST_UNSET}"]}`:      "cookie_keys[0] is 0 characters",
		`{"redirect_uris":{"a":[]}}`:                           `client "a" lists no URI`,
		`{"redirect_uris":{"a":["/relative"]}}`:                "not absolute",
		`{"redirect_uris":{"":["https://a/"]}}`:                "a client_id is empty",
		`{"exempt_clients":[""]}`:                              "exempt_clients[0] is empty",
	} {
		t.Run(config, func(t *testing.T) {
			g := new(Guard)
			if err := json.Unmarshal([]byte(config), g); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			if err := g.Provision(ctx); err != nil {
				t.Fatalf("Provision: %v", err)
			}
			err := g.Validate()
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("Validate() = %v, want an error containing %q", err, wantErr)
			}
		})
	}
}

// TestCookieKeyPlaceholder checks that cookie_keys resolve {env.*}.
func TestCookieKeyPlaceholder(t *testing.T) {
	t.Setenv("PKCE_GUARD_TEST_KEY", testCookieKey)
	g, _ := newGuard(t, `{"cookie_keys":["{env.PKCE_GUARD_TEST_KEY}"]}`)
	if string(g.cookieSecrets[0]) != testCookieKey {
		t.Errorf("cookie key %q, want the environment's", g.cookieSecrets[0])
	}
}

// TestCookieKeyInStorage checks that concurrent instances sharing storage
// create one key and all use it.
func TestCookieKeyInStorage(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	keys := make([][]byte, 4)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := loadOrCreateCookieKey(context.Background(), storage)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		}()
	}
	wg.Wait()
	for i := range keys {
		if len(keys[i]) != cookieKeySize || !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("instances got different keys: %x", keys)
		}
	}
	if err := storage.Store(context.Background(), cookieKeyStorageKey, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	if _, err := loadOrCreateCookieKey(context.Background(), storage); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("a corrupt stored key gave %v, want an error saying so", err)
	}
}
