package pkceauth

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func TestUnmarshalCaddyfileBearer(t *testing.T) {
	cases := []struct {
		name  string
		input string
		want  PKCEAuth
	}{
		{
			name: "every bearer subdirective",
			input: `pkce_auth {
				bearer {
					audiences       https://api.example.com api://app
					required_scopes read:things write:things
					require_at_jwt
					only
					max_token_size  8192
					cache_size      500
					resource_metadata {
						resource         https://api.example.com/v1
						scopes_supported read:things write:things admin
					}
				}
			}`,
			want: PKCEAuth{Bearer: &BearerConfig{
				Audiences:      []string{"https://api.example.com", "api://app"},
				RequiredScopes: []string{"read:things", "write:things"},
				RequireATJWT:   true,
				Only:           true,
				MaxTokenSize:   8192,
				CacheSize:      500,
				ResourceMetadata: &ResourceMetadata{
					Resource:        "https://api.example.com/v1",
					ScopesSupported: []string{"read:things", "write:things", "admin"},
				},
			}},
		},
		{
			name: "resource_metadata with its defaults",
			input: `pkce_auth {
				bearer {
					audiences a
					resource_metadata
				}
			}`,
			want: PKCEAuth{Bearer: &BearerConfig{Audiences: []string{"a"}, ResourceMetadata: &ResourceMetadata{}}},
		},
		{
			name: "matcher sets inline, in a block, repeated",
			input: `pkce_auth {
				api_match path /api/* /graphql
				api_match {
					header Accept application/json*
					method GET
				}
				navigation_match path /docs/*
			}`,
			want: PKCEAuth{
				APIMatchRaw: caddyhttp.RawMatcherSets{
					{"path": json.RawMessage(`["/api/*","/graphql"]`)},
					{"header": json.RawMessage(`{"Accept":["application/json*"]}`), "method": json.RawMessage(`["GET"]`)},
				},
				NavigationMatchRaw: caddyhttp.RawMatcherSets{{"path": json.RawMessage(`["/docs/*"]`)}},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { expectParsed(t, tc.input, tc.want) })
	}
}

func TestUnmarshalCaddyfileBearerErrors(t *testing.T) {
	cases := map[string]struct{ input, wantErr string }{
		"bearer with an argument":       {"pkce_auth {\n bearer only\n}", `bearer takes no arguments, found "only"`},
		"unknown bearer subdirective":   {"pkce_auth {\n bearer {\n  audience a\n }\n}", "unrecognized bearer subdirective audience"},
		"duplicate bearer subdirective": {"pkce_auth {\n bearer {\n  audiences a\n  audiences b\n }\n}", "bearer: audiences may be given only once"},
		"bearer twice":                  {"pkce_auth {\n bearer {\n  audiences a\n }\n bearer {\n  audiences b\n }\n}", "subdirective bearer may be given only once"},
		"audiences empty":               {"pkce_auth {\n bearer {\n  audiences\n }\n}", "wrong argument count"},
		"only with an argument":         {"pkce_auth {\n bearer {\n  only yes\n }\n}", "wrong argument count"},
		"bad max_token_size":            {"pkce_auth {\n bearer {\n  max_token_size 8k\n }\n}", `max_token_size: "8k" is not a whole number`},
		"resource_metadata argument":    {"pkce_auth {\n bearer {\n  resource_metadata https://x\n }\n}", "resource_metadata takes no arguments"},
		"unknown metadata subdirective": {"pkce_auth {\n bearer {\n  resource_metadata {\n   scopes a\n  }\n }\n}", "unrecognized resource_metadata subdirective scopes"},
		"api_match without matcher":     {"pkce_auth {\n api_match\n}", "api_match needs at least one matcher"},
		"api_match unknown matcher":     {"pkce_auth {\n api_match pathh /x\n}", "getting matcher module 'pathh'"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) { expectParseError(t, tc.input, tc.wantErr) })
	}
}

// TestValidateBearer: every bad bearer setting is refused with a message
// naming the field; a minimal valid one passes.
func TestValidateBearer(t *testing.T) {
	base := func(b *BearerConfig) *PKCEAuth {
		p := &PKCEAuth{Issuer: "https://idp.example/realms/main", ClientID: "app", Bearer: b}
		p.setDefaults()
		return p
	}
	if err := base(&BearerConfig{Audiences: []string{"https://api.example"}}).Validate(); err != nil {
		t.Fatalf("minimal bearer config does not validate: %v", err)
	}
	only := base(&BearerConfig{Audiences: []string{"api"}, Only: true})
	only.ClientID = ""
	if err := only.Validate(); err != nil {
		t.Errorf("bearer only without client_id: %v; want valid", err)
	}
	onlyAnon := base(&BearerConfig{Audiences: []string{"api"}, Only: true})
	onlyAnon.PassUnauthenticated = true
	if err := onlyAnon.Validate(); err == nil || !strings.Contains(err.Error(), "pass_unauthenticated would never apply") {
		t.Errorf("bearer only with pass_unauthenticated: %v; want refused", err)
	}
	noClient := base(&BearerConfig{Audiences: []string{"api"}})
	noClient.ClientID = ""
	if err := noClient.Validate(); err == nil || !strings.Contains(err.Error(), "client_id is required") {
		t.Errorf("bearer (not only) without client_id: %v; want client_id is required", err)
	}
	for _, tc := range []struct {
		name    string
		cfg     BearerConfig
		wantErr string
	}{
		{"no audiences", BearerConfig{}, "bearer: audiences is required"},
		{"empty audience", BearerConfig{Audiences: []string{"a", ""}}, "audiences[1] is empty"},
		{"scope with a quote", BearerConfig{Audiences: []string{"a"}, RequiredScopes: []string{`re"ad`}}, "required_scopes"},
		{"scope with a space", BearerConfig{Audiences: []string{"a"}, RequiredScopes: []string{"read write"}}, "required_scopes"},
		{"negative max_token_size", BearerConfig{Audiences: []string{"a"}, MaxTokenSize: -1}, "max_token_size"},
		{"huge max_token_size", BearerConfig{Audiences: []string{"a"}, MaxTokenSize: 2 << 20}, "max_token_size"},
		{"negative cache_size", BearerConfig{Audiences: []string{"a"}, CacheSize: -1}, "cache_size"},
		{"http resource", BearerConfig{Audiences: []string{"a"}, ResourceMetadata: &ResourceMetadata{Resource: "http://api.example"}}, "absolute https URL"},
		{"relative resource", BearerConfig{Audiences: []string{"a"}, ResourceMetadata: &ResourceMetadata{Resource: "/v1"}}, "absolute https URL"},
		{"resource with fragment", BearerConfig{Audiences: []string{"a"}, ResourceMetadata: &ResourceMetadata{Resource: "https://api.example/#x"}}, "fragment"},
		{"bad scopes_supported", BearerConfig{Audiences: []string{"a"}, ResourceMetadata: &ResourceMetadata{ScopesSupported: []string{""}}}, "scopes_supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			err := base(&cfg).Validate()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Validate = %v; want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
