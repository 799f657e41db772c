package pkceguard

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// TestReadmeExamples keeps README.md honest: its JSON example provisions
// and validates, and every complete Caddyfile example adapts.
func TestReadmeExamples(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```(json|caddyfile)\n(.*?)```").FindAllStringSubmatch(string(data), -1)
	sites, jsons := 0, 0
	for _, b := range blocks {
		switch {
		case b[1] == "json":
			jsons++
			t.Setenv("PKCE_GUARD_COOKIE_KEY", testCookieKey)
			var raw map[string]json.RawMessage
			if err := json.Unmarshal([]byte(b[2]), &raw); err != nil {
				t.Fatalf("README JSON: %v", err)
			}
			delete(raw, "handler")
			cfg, _ := json.Marshal(raw)
			g := new(Guard)
			if err := json.Unmarshal(cfg, g); err != nil {
				t.Fatalf("README JSON: %v", err)
			}
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			if err := g.Provision(ctx); err != nil {
				t.Fatalf("README JSON: Provision: %v", err)
			}
			if err := g.Validate(); err != nil {
				t.Errorf("README JSON: Validate: %v", err)
			}
			cancel()
		case strings.Contains(b[2], "reverse_proxy"):
			sites++
			if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(b[2]), nil); err != nil {
				t.Errorf("README Caddyfile example does not adapt: %v\n%s", err, b[2])
			}
		}
	}
	if sites < 4 || jsons != 1 {
		t.Errorf("found %d Caddyfile site examples and %d JSON examples in README.md", sites, jsons)
	}
}
