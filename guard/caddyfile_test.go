package pkceguard

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// TestUnmarshalCaddyfile checks what each subdirective sets, as the JSON the
// handler would be configured with.
func TestUnmarshalCaddyfile(t *testing.T) {
	for name, tc := range map[string]struct{ input, want string }{
		"defaults": {`pkce_guard`, `{}`},
		"empty block": {`pkce_guard {
		}`, `{}`},
		"paths": {`pkce_guard {
			authorization_paths /oauth2/auth /login/oauth/authorize
			token_paths /oauth2/token
			discovery_paths /.well-known/openid-configuration
		}`, `{"authorization_paths":["/oauth2/auth","/login/oauth/authorize"],"token_paths":["/oauth2/token"],"discovery_paths":["/.well-known/openid-configuration"]}`},
		"methods and verifier length": {`pkce_guard {
			methods S256 plain
			verifier_length 64 100
		}`, `{"methods":["S256","plain"],"min_verifier_length":64,"max_verifier_length":100}`},
		"verifier length min only": {`pkce_guard {
			verifier_length 50
		}`, `{"min_verifier_length":50}`},
		"clients": {`pkce_guard {
			exempt_clients legacy-1 legacy-2
			confidential_without_pkce
			redirect_uris app https://app.example/cb https://app.example/cb2
			redirect_uris native com.example.app:/cb
		}`, `{"exempt_clients":["legacy-1","legacy-2"],"confidential_without_pkce":true,"redirect_uris":{"app":["https://app.example/cb","https://app.example/cb2"],"native":["com.example.app:/cb"]}}`},
		"lifetime and keys": {`pkce_guard {
			binding_lifetime 5m
			cookie_keys {env.KEY1} {file./run/secrets/key2}
		}`, `{"binding_lifetime":300000000000,"cookie_keys":["{env.KEY1}","{file./run/secrets/key2}"]}`},
		"memory store": {`pkce_guard {
			store memory {
				max_entries 5000
			}
		}`, `{"store":{"max_entries":5000,"type":"memory"}}`},
		"memory store without block": {`pkce_guard {
			store memory
		}`, `{"store":{"type":"memory"}}`},
		"redis store": {`pkce_guard {
			store redis {
				addresses redis-1:6379 redis-2:6379
				master_name main
				username caddy
				password {env.REDIS_PASSWORD}
				db 2
				tls
				key_prefix pg:
				timeout 1s
			}
		}`, `{"store":{"addresses":["redis-1:6379","redis-2:6379"],"db":2,"key_prefix":"pg:","master_name":"main","password":"{env.REDIS_PASSWORD}","timeout":1000000000,"tls":true,"type":"redis","username":"caddy"}}`},
		"storage store": {`pkce_guard {
			store storage {
				prefix guard/records
			}
		}`, `{"store":{"prefix":"guard/records","type":"storage"}}`},
	} {
		t.Run(name, func(t *testing.T) {
			var g Guard
			if err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input)); err != nil {
				t.Fatalf("UnmarshalCaddyfile: %v", err)
			}
			got, err := json.Marshal(g)
			if err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(t, got, []byte(tc.want)) {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return string(ja) == string(jb)
}

// TestUnmarshalCaddyfileErrors is the table of parser errors.
func TestUnmarshalCaddyfileErrors(t *testing.T) {
	for input, wantErr := range map[string]string{
		`pkce_guard extra`:                                                          "wrong argument count",
		"pkce_guard {\nunknown\n}":                                                  "unrecognized subdirective unknown",
		"pkce_guard {\nauthorization_paths\n}":                                      "wrong argument count",
		"pkce_guard {\ntoken_paths\n}":                                              "wrong argument count",
		"pkce_guard {\nmethods\n}":                                                  "wrong argument count",
		"pkce_guard {\nmethods S256 s256\n}":                                        `unknown code_challenge_method "s256"`,
		"pkce_guard {\nverifier_length\n}":                                          "wrong argument count",
		"pkce_guard {\nverifier_length 42\n}":                                       "from 43 to 128",
		"pkce_guard {\nverifier_length 43 129\n}":                                   "from 43 to 128",
		"pkce_guard {\nverifier_length 43 50 60\n}":                                 "wrong argument count",
		"pkce_guard {\nverifier_length x\n}":                                        "from 43 to 128",
		"pkce_guard {\nexempt_clients\n}":                                           "wrong argument count",
		"pkce_guard {\nconfidential_without_pkce yes\n}":                            "wrong argument count",
		"pkce_guard {\nredirect_uris app\n}":                                        "a client_id and at least one URI",
		"pkce_guard {\nredirect_uris app /cb\n}":                                    "not absolute",
		"pkce_guard {\nredirect_uris app https://a/cb#x\n}":                         "fragment",
		"pkce_guard {\nredirect_uris a https://a/1\nredirect_uris a https://a/2\n}": "only once",
		"pkce_guard {\nbinding_lifetime\n}":                                         "wrong argument count",
		"pkce_guard {\nbinding_lifetime soon\n}":                                    "positive duration",
		"pkce_guard {\nbinding_lifetime -1m\n}":                                     "positive duration",
		"pkce_guard {\nbinding_lifetime 1m 2m\n}":                                   "wrong argument count",
		"pkce_guard {\ncookie_keys\n}":                                              "wrong argument count",
		"pkce_guard {\nstore\n}":                                                    "wrong argument count",
		"pkce_guard {\nstore nosuch\n}":                                             "getting module named",
		"pkce_guard {\nstore memory extra\n}":                                       "wrong argument count",
		"pkce_guard {\nstore memory {\nmax_entries 0\n}\n}":                         "positive number",
		"pkce_guard {\nstore memory {\nbogus\n}\n}":                                 "unrecognized subdirective bogus",
		"pkce_guard {\nstore redis {\ndb x\n}\n}":                                   "database number",
		"pkce_guard {\nstore redis {\naddresses\n}\n}":                              "wrong argument count",
		"pkce_guard {\nstore redis {\ntls\ntls\n}\n}":                               "only once",
		"pkce_guard {\nstore redis {\ntimeout 0s\n}\n}":                             "positive duration",
		"pkce_guard {\nstore storage {\nprefix a b\n}\n}":                           "wrong argument count",
		"pkce_guard {\nmethods S256\nmethods S256\n}":                               "only once",
		"pkce_guard {\nstore memory\nstore memory\n}":                               "only once",
		"pkce_guard {\nbinding_lifetime 1m\nbinding_lifetime 2m\n}":                 "only once",
	} {
		t.Run(input, func(t *testing.T) {
			var g Guard
			err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("got error %v, want one containing %q", err, wantErr)
			}
		})
	}
}

// TestAdapt adapts each testdata/*.caddytest Caddyfile (the part before the
// dashed line) and compares the JSON with the part after it. Set
// PKCE_GUARD_UPDATE_GOLDEN=1 to print the adapted JSON.
func TestAdapt(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.caddytest"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			caddyfileText, want, ok := strings.Cut(string(data), "\n----------\n")
			if !ok {
				t.Fatal("no dashed line between the Caddyfile and the JSON")
			}
			if !caddytest.CompareAdapt(t, f, caddyfileText, "caddyfile", strings.TrimSpace(want)) {
				t.Error("adapted JSON differs from the golden file (diff above)")
			}
		})
	}
}
