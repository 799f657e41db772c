package pkceauth

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/caddy-pkce/caddy-pkce/internal/testop"
)

// providerClaims are claim sets shaped as real providers send them.
const providerClaims = `{
	"sub": "u1",
	"email_verified": "true",
	"groups": ["/staff", "/staff/admins"],
	"realm_access": {"roles": ["offline_access", "app-user"]},
	"resource_access": {"app": {"roles": ["editor"]}, "other": {"roles": ["x"]}},
	"urn:zitadel:iam:org:project:roles": {"viewer": {"123": "org.example"}, "admin": {"123": "org.example"}},
	"cognito:groups": ["ops"],
	"https://example.com/claims/roles": ["from-auth0-action"],
	"roles_csv": "a, b,c",
	"roles_space": "a b  c",
	"level": 3,
	"big": 12345678901234567890,
	"ratio": 0.5,
	"active": true,
	"nested": {"deeper": {"value": "found"}, "dotted.key": "whole"},
	"null_claim": null,
	"mixed": ["a", 1, true, null, ""],
	"empty": [],
	"object": {"k": "v"}
}`

func parseClaims(t *testing.T) map[string]any {
	t.Helper()
	var c map[string]any
	if err := json.Unmarshal([]byte(providerClaims), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLookupClaim(t *testing.T) {
	claims := parseClaims(t)
	cases := []struct {
		path  string
		found bool
		want  any
	}{
		{"sub", true, "u1"},
		{"realm_access.roles", true, []any{"offline_access", "app-user"}},
		{"resource_access.app.roles", true, []any{"editor"}},
		{"urn:zitadel:iam:org:project:roles", true, claims["urn:zitadel:iam:org:project:roles"]},
		{"cognito:groups", true, []any{"ops"}},
		{"https://example.com/claims/roles", true, []any{"from-auth0-action"}},
		{"nested.deeper.value", true, "found"},
		{"nested.dotted.key", true, "whole"},
		{"null_claim", true, nil},
		{"missing", false, nil},
		{"realm_access.missing", false, nil},
		{"sub.inner", false, nil}, // through a string
		{"groups.0", false, nil},  // arrays are not indexed
		{"realm_access.roles.extra", false, nil},
		{"", false, nil},
		{".", false, nil},
	}
	for _, c := range cases {
		got, found := lookupClaim(claims, c.path)
		if found != c.found || !reflect.DeepEqual(got, c.want) {
			t.Errorf("lookupClaim(%q) = %v, %v; want %v, %v", c.path, got, found, c.want, c.found)
		}
	}
}

func TestClaimStrings(t *testing.T) {
	claims := parseClaims(t)
	get := func(path string) any { v, _ := lookupClaim(claims, path); return v }
	cases := []struct {
		name string
		v    any
		want []string
	}{
		{"Keycloak group paths", get("groups"), []string{"/staff", "/staff/admins"}},
		{"Keycloak realm roles", get("realm_access.roles"), []string{"offline_access", "app-user"}},
		{"Zitadel role object (sorted keys)", get("urn:zitadel:iam:org:project:roles"), []string{"admin", "viewer"}},
		{"comma-separated", get("roles_csv"), []string{"a", "b", "c"}},
		{"space-separated", get("roles_space"), []string{"a", "b", "c"}},
		{"mixed array drops empties", get("mixed"), []string{"a", "1", "true"}},
		{"empty array", get("empty"), []string{}},
		{"number", get("level"), []string{"3"}},
		{"bool", get("active"), []string{"true"}},
		{"null", nil, nil},
		{"empty string", "", []string{}},
	}
	for _, c := range cases {
		got := claimStrings(c.v)
		if len(got) == 0 && len(c.want) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: claimStrings(%v) = %q, want %q", c.name, c.v, got, c.want)
		}
	}
}

func TestClaimString(t *testing.T) {
	claims := parseClaims(t)
	cases := []struct {
		v    any
		want string
	}{
		{claims["sub"], "u1"},
		{claims["level"], "3"},
		{claims["big"], "12345678901234567000"}, // float64, no exponent
		{claims["ratio"], "0.5"},
		{claims["active"], "true"},
		{claims["groups"], "/staff,/staff/admins"},
		{claims["object"], `{"k":"v"}`},
		{nil, ""},
		{json.Number("42"), "42"},
	}
	for _, c := range cases {
		if got := claimString(c.v); got != c.want {
			t.Errorf("claimString(%#v) = %q, want %q", c.v, got, c.want)
		}
	}
}

func TestClaimBool(t *testing.T) {
	cases := []struct {
		v    any
		want bool
	}{
		{true, true},
		{false, false},
		{"true", true}, // Cognito, Apple
		{"True", true},
		{"1", true},
		{"false", false},
		{"yes", false},
		{"", false},
		{nil, false}, // missing is not verified
		{1.0, false},
		{[]any{true}, false},
	}
	for _, c := range cases {
		if got := claimBool(c.v); got != c.want {
			t.Errorf("claimBool(%#v) = %v, want %v", c.v, got, c.want)
		}
	}
}

// TestClaimMapping runs a login with provider-shaped claims through the
// real flow: groups from a Keycloak role path, a Zitadel role object and a
// Cognito string boolean become the placeholders.
func TestClaimMapping(t *testing.T) {
	cases := []struct {
		name        string
		groupsClaim string
		extra       map[string]any
		wantGroups  string
		wantVerify  string
	}{
		{"Keycloak realm roles", "realm_access.roles",
			map[string]any{"realm_access": map[string]any{"roles": []string{"app-user", "offline_access"}}}, "app-user,offline_access", "true"},
		{"Zitadel project roles", "urn:zitadel:iam:org:project:roles",
			map[string]any{"urn:zitadel:iam:org:project:roles": map[string]any{"viewer": map[string]any{"1": "o"}, "admin": map[string]any{"1": "o"}}}, "admin,viewer", "true"},
		{"Cognito groups, string email_verified", "cognito:groups",
			map[string]any{"cognito:groups": []string{"ops"}, "email_verified": "true"}, "ops", "true"},
		{"comma string, email_verified missing", "roles",
			map[string]any{"roles": "a,b", "email_verified": nil}, "a,b", "false"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			op := newClaimsProvider(t, c.extra)
			s := startSite(t, op, siteOptions{auth: map[string]any{"groups_claim": c.groupsClaim}})
			b := newBrowser(t, s)
			s.login(t, b, "/")
			r := b.fetch(s.base + "/api")
			expectStatus(t, r, 200)
			f := r.Fields()
			if f["groups"] != c.wantGroups {
				t.Errorf("groups %q, want %q", f["groups"], c.wantGroups)
			}
			if f["email_verified"] != c.wantVerify {
				t.Errorf("email_verified %q, want %q", f["email_verified"], c.wantVerify)
			}
		})
	}
}

// newClaimsProvider is a test provider whose user has the given extra claims.
func newClaimsProvider(t *testing.T, extra map[string]any) *testop.Provider {
	t.Helper()
	op := testop.New(t, testop.Config{})
	u := testop.DefaultUser()
	u.Extra = extra
	op.SetUser(u)
	return op
}
