package pkceguard

import "testing"

func TestNormalizePath(t *testing.T) {
	for in, want := range map[string]string{
		"/authorize":               "/authorize",
		"/AUTHORIZE":               "/authorize",
		"/authorize/":              "/authorize",
		"//authorize":              "/authorize",
		"/a/../authorize":          "/authorize",
		"/./authorize":             "/authorize",
		"/authorize;jsessionid=1":  "/authorize",
		"/realms;x/r/protocol;y/a": "/realms/r/protocol/a",
		`\authorize`:               "/authorize",
		"authorize":                "/authorize",
		"":                         "/",
		"/../../authorize":         "/authorize",
	} {
		if got := normalizePath(in); got != want {
			t.Errorf("normalizePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWildcardMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"/authorize", "/authorize", true},
		{"/authorize", "/authorize2", false},
		{"/authorize", "/x/authorize", false},
		{"*/authorize", "/x/authorize", true},
		{"/dex/auth*", "/dex/auth", true},
		{"/dex/auth*", "/dex/auth/local", true},
		{"/dex/auth*", "/dex/token", false},
		{"*/realms/*/protocol/openid-connect/auth", "/realms/master/protocol/openid-connect/auth", true},
		{"*/realms/*/protocol/openid-connect/auth", "/auth/realms/master/protocol/openid-connect/auth", true},
		{"*/realms/*/protocol/openid-connect/auth", "/realms/master/protocol/openid-connect/token", false},
		{"*/realms/*/protocol/openid-connect/auth", "/realms/master/protocol/openid-connect/auth/device", false},
		{"*", "/anything", true},
		{"**", "/", true},
		{"/a*b*c", "/aXbYc", true},
		{"/a*b*c", "/aXbY", false},
		{"", "", true},
		{"/x", "", false},
	} {
		if got := wildcardMatch(tc.pattern, tc.s); got != tc.want {
			t.Errorf("wildcardMatch(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

// TestDefaultPaths checks that the defaults cover the servers the README
// names, in the variants those servers route.
func TestDefaultPaths(t *testing.T) {
	auth, token, disc := compilePatterns(defaultAuthorizationPaths), compilePatterns(defaultTokenPaths), compilePatterns(defaultDiscoveryPaths)
	for _, p := range []string{
		"/realms/master/protocol/openid-connect/auth",
		"/auth/realms/master/protocol/openid-connect/auth", // Keycloak before 17
		"/realms/Master/protocol/openid-connect/auth;jsessionid=x",
		"/dex/auth", "/dex/auth/local", "/authorize", "/oauth/authorize", "/oauth2/authorize",
	} {
		if !matchAny(auth, normalizePath(p)) {
			t.Errorf("authorization path %s is not guarded by default", p)
		}
	}
	for _, p := range []string{
		"/realms/master/protocol/openid-connect/token", "/auth/realms/x/protocol/openid-connect/token",
		"/dex/token", "/token", "/oauth/token", "/oauth2/token/",
	} {
		if !matchAny(token, normalizePath(p)) {
			t.Errorf("token path %s is not guarded by default", p)
		}
	}
	for _, p := range []string{
		"/.well-known/openid-configuration", "/realms/x/.well-known/openid-configuration",
		"/dex/.well-known/openid-configuration", "/.well-known/oauth-authorization-server",
		"/.well-known/oauth-authorization-server/realms/x",
	} {
		if !matchAny(disc, normalizePath(p)) {
			t.Errorf("discovery path %s is not rewritten by default", p)
		}
	}
	for _, p := range []string{"/realms/x/login-actions/authenticate", "/dex/callback", "/userinfo", "/"} {
		if matchAny(auth, normalizePath(p)) || matchAny(token, normalizePath(p)) {
			t.Errorf("%s matches an endpoint by default", p)
		}
	}
}
