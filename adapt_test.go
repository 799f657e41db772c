package pkceauth

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

var windowsNewlines = regexp.MustCompile(`\r?\n`)

// TestAdapt runs the golden files in testdata/adapt. Each holds a
// Caddyfile, a line of dashes, then either the JSON the caddyfile adapter
// must produce or, for a file whose second part does not start with "{", a
// part of the error adaptation must fail with.
func TestAdapt(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "adapt", "*.caddytest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/adapt/*.caddytest files")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.Split(windowsNewlines.ReplaceAllString(string(data), "\n"), "----------")
			if len(parts) != 2 {
				t.Fatalf("want a Caddyfile and the expected result separated by one line of dashes, got %d parts", len(parts))
			}
			input, expected := strings.TrimSpace(parts[0])+"\n", strings.TrimSpace(parts[1])
			// file_server hides the Caddyfile by its OS-specific path.
			hidden, _ := json.Marshal("." + string(filepath.Separator) + "Caddyfile")
			expected = strings.ReplaceAll(expected, `"./Caddyfile"`, string(hidden))

			// Adapted as "Caddyfile", the name caddytest.CompareAdapt uses.
			if !strings.HasPrefix(expected, "{") {
				_, _, err := adaptCaddyfile("Caddyfile", input)
				if err == nil {
					t.Fatalf("adapting succeeded; want an error containing %q", expected)
				}
				if !strings.Contains(err.Error(), expected) {
					t.Errorf("error %q does not contain %q", err, expected)
				}
				return
			}

			if !caddytest.CompareAdapt(t, filepath.Base(file), input, "caddyfile", expected) {
				t.Error("adapted JSON differs from the expected JSON (diff above)")
			}
			// CompareAdapt only logs warnings; a golden file must adapt
			// cleanly (it is formatted, uses no deprecated syntax), and
			// every pkce_auth in it must be a valid configuration.
			out, warnings, err := adaptCaddyfile("Caddyfile", input)
			if err != nil {
				t.Fatalf("adapting: %v", err)
			}
			for _, w := range warnings {
				t.Errorf("warning: %s", w)
			}
			checkHandlers(t, out)
		})
	}
}

// TestAdaptExample keeps example.Caddyfile working: it must adapt without
// error or warning, and contain a configured pkce_auth handler.
func TestAdaptExample(t *testing.T) {
	input, err := os.ReadFile("example.Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	out, warnings, err := adaptCaddyfile("example.Caddyfile", string(input))
	if err != nil {
		t.Fatalf("adapting example.Caddyfile: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("example.Caddyfile: warning: %s", w)
	}
	handlers := checkHandlers(t, out)
	if len(handlers) != 1 {
		t.Fatalf("adapted example.Caddyfile has %d pkce_auth handlers, want 1:\n%s", len(handlers), out)
	}
	if h := handlers[0]; h.ClientSecret != "{env.OIDC_CLIENT_SECRET}" || len(h.Headers) == 0 {
		t.Errorf("example's pkce_auth should read client_secret from {env.OIDC_CLIENT_SECRET} and map headers, got %+v", h)
	}
}

// checkHandlers finds every pkce_auth handler in adapted JSON, decodes it
// strictly (so each key is a PKCEAuth field) and checks that it passes
// Validate once defaults are applied, as Provision would.
func checkHandlers(t *testing.T, adapted []byte) []PKCEAuth {
	t.Helper()
	var tree any
	if err := json.Unmarshal(adapted, &tree); err != nil {
		t.Fatalf("adapted config is not JSON: %v", err)
	}
	var found []PKCEAuth
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["handler"] == "pkce_auth" {
				found = append(found, decodeHandler(t, v))
				return
			}
			for _, child := range v {
				walk(child)
			}
		case []any:
			for _, child := range v {
				walk(child)
			}
		}
	}
	walk(tree)
	return found
}

func decodeHandler(t *testing.T, raw map[string]any) PKCEAuth {
	t.Helper()
	fields := make(map[string]any, len(raw))
	for k, v := range raw {
		if k != "handler" {
			fields[k] = v
		}
	}
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p PKCEAuth
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("pkce_auth handler %s: %v", b, err)
	}
	valid := p
	valid.setDefaults()
	if err := valid.Validate(); err != nil {
		t.Errorf("pkce_auth handler %s is not valid: %v", b, err)
	}
	return p
}

func adaptCaddyfile(filename, input string) ([]byte, []caddyconfig.Warning, error) {
	adapter := caddyconfig.GetAdapter("caddyfile")
	return adapter.Adapt([]byte(input), map[string]any{"filename": filename})
}
