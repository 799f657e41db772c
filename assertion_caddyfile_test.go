package pkceauth

import (
	"reflect"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// assertionCaddyfileCases are the assertion block's and userinfo_path's
// happy paths.
var assertionCaddyfileCases = []struct {
	name  string
	input string
	want  PKCEAuth
}{
	{
		name: "every assertion subdirective",
		input: `pkce_auth {
			assertion {
				header    X-Identity-Assertion
				audience  https://app.internal
				claims    email groups realm_access.roles
				lifetime  2m
				issuer    https://app.example.com
				key_files /etc/caddy/assertion-new.pem {env.OLD_KEY_FILE}
				jwks_path /.well-known/jwks.json
			}
		}`,
		want: PKCEAuth{Assertion: &AssertionConfig{
			Header:   "X-Identity-Assertion",
			Audience: "https://app.internal",
			Claims:   []string{"email", "groups", "realm_access.roles"},
			Lifetime: caddy.Duration(2 * time.Minute),
			Issuer:   "https://app.example.com",
			KeyFiles: []string{"/etc/caddy/assertion-new.pem", "{env.OLD_KEY_FILE}"},
			JWKSPath: ptr("/.well-known/jwks.json"),
		}},
	},
	{
		name:  "audience alone",
		input: "pkce_auth {\n assertion {\n  audience api\n }\n}",
		want:  PKCEAuth{Assertion: &AssertionConfig{Audience: "api"}},
	},
	{
		name:  "jwks_path off",
		input: "pkce_auth {\n assertion {\n  audience api\n  jwks_path off\n }\n}",
		want:  PKCEAuth{Assertion: &AssertionConfig{Audience: "api", JWKSPath: ptr("off")}},
	},
	{
		name:  "userinfo_path off",
		input: "pkce_auth {\n userinfo_path off\n}",
		want:  PKCEAuth{UserinfoPath: ptr("off")},
	},
	{
		name:  "userinfo_path and the provider's userinfo side by side",
		input: "pkce_auth {\n userinfo\n userinfo_path /me\n}",
		want:  PKCEAuth{Userinfo: true, UserinfoPath: ptr("/me")},
	},
}

func TestUnmarshalCaddyfileAssertion(t *testing.T) {
	for _, tc := range assertionCaddyfileCases {
		t.Run(tc.name, func(t *testing.T) { expectParsed(t, tc.input, tc.want) })
	}
}

// TestAssertionCaddyfileCoversEveryField fails when AssertionConfig gains
// a field the "every assertion subdirective" case does not set.
func TestAssertionCaddyfileCoversEveryField(t *testing.T) {
	v := reflect.ValueOf(*assertionCaddyfileCases[0].want.Assertion)
	for i := range v.NumField() {
		if f := v.Type().Field(i); f.IsExported() && v.Field(i).IsZero() {
			t.Errorf("field %s is not set by the \"every assertion subdirective\" case", f.Name)
		}
	}
}

func TestUnmarshalCaddyfileAssertionErrors(t *testing.T) {
	for name, tc := range map[string]struct{ input, wantErr string }{
		"assertion with an argument":  {"pkce_auth {\n assertion https://app {\n  audience a\n }\n}", `assertion takes no arguments, found "https://app"`},
		"assertion without audience":  {"pkce_auth {\n assertion {\n  header X-A\n }\n}", "assertion: audience is required"},
		"assertion without a block":   {"pkce_auth {\n assertion\n}", "assertion: audience is required"},
		"unknown assertion directive": {"pkce_auth {\n assertion {\n  audience a\n  algorithm RS256\n }\n}", "unrecognized assertion subdirective algorithm"},
		"duplicate assertion claims":  {"pkce_auth {\n assertion {\n  audience a\n  claims email\n  claims groups\n }\n}", "assertion: claims may be given only once"},
		"two audiences":               {"pkce_auth {\n assertion {\n  audience a b\n }\n}", "wrong argument count"},
		"empty claims":                {"pkce_auth {\n assertion {\n  audience a\n  claims\n }\n}", "wrong argument count"},
		"bad lifetime":                {"pkce_auth {\n assertion {\n  audience a\n  lifetime soon\n }\n}", `lifetime: "soon" is not a duration`},
		"jwks_path without a value":   {"pkce_auth {\n assertion {\n  audience a\n  jwks_path\n }\n}", "wrong argument count"},
		"assertion twice":             {"pkce_auth {\n assertion {\n  audience a\n }\n assertion {\n  audience b\n }\n}", "subdirective assertion may be given only once"},
		"userinfo_path without value": {"pkce_auth {\n userinfo_path\n}", "wrong argument count"},
		"userinfo_path twice":         {"pkce_auth {\n userinfo_path /a\n userinfo_path /b\n}", "subdirective userinfo_path may be given only once"},
	} {
		t.Run(name, func(t *testing.T) { expectParseError(t, tc.input, tc.wantErr) })
	}
}
