package pkceguard

import (
	"net/url"
	"testing"
)

func TestCodeRedirect(t *testing.T) {
	base, _ := url.Parse("https://sso.example.com/realms/x/login-actions/authenticate")
	for _, tc := range []struct {
		location, target, code, state string
		ok                            bool
	}{
		{"https://app.example/cb?code=c1&state=s1", "https://app.example/cb", "c1", "s1", true},
		{"https://APP.example:443/cb?state=s1&code=c1&iss=x", "https://app.example/cb", "c1", "s1", true},
		{"http://app.example:80/cb?code=c1", "http://app.example/cb", "c1", "", true},
		{"http://app.example:8080/cb?code=c1", "http://app.example:8080/cb", "c1", "", true},
		{"https://app.example/cb?x=1&code=c1", "https://app.example/cb", "c1", "", true},
		{"https://app.example/cb#code=c1&state=s1", "https://app.example/cb", "c1", "s1", true},
		{"com.example.app:/oauth2redirect?code=c1", "com.example.app:///oauth2redirect", "c1", "", true},
		{"http://[::1]:80/cb?code=c1", "http://[::1]/cb", "c1", "", true},
		{"/relative/cb?code=c1", "https://sso.example.com/relative/cb", "c1", "", true},
		{"https://app.example/cb?error=access_denied&state=s1", "", "", "", false},
		{"https://app.example/cb?code=", "", "", "", false},
		{"https://app.example/cb?code=a&code=b", "", "", "", false},
		{"https://app.example/cb?code=a#code=b", "", "", "", false},
		{"https://app.example/cb?code=a&state=1&state=2", "", "", "", false},
		{"https://app.example/cb?code=a;state=1", "", "", "", false},
		{"https://app.example/cb?code=%zz", "", "", "", false},
		{"https://sso.example.com/realms/x/protocol/openid-connect/auth?client_id=a", "", "", "", false},
	} {
		target, code, state, ok := codeRedirect(base, tc.location)
		if ok != tc.ok || code != tc.code || state != tc.state || (ok && target != tc.target) {
			t.Errorf("codeRedirect(%q) = %q, %q, %q, %v; want %q, %q, %q, %v", tc.location, target, code, state, ok, tc.target, tc.code, tc.state, tc.ok)
		}
	}
}

// TestRedirectTargetMatches checks that a registered redirect URI and the
// Location the server builds from it reduce to the same target, and that
// a look-alike does not.
func TestRedirectTargetMatches(t *testing.T) {
	base, _ := url.Parse("https://sso.example.com/")
	for _, tc := range []struct {
		redirectURI, location string
		match                 bool
	}{
		{"https://app.example/cb", "https://app.example/cb?code=c", true},
		{"https://app.example/cb?tenant=1", "https://app.example/cb?tenant=1&code=c", true},
		{"com.example.app:/oauth2redirect", "com.example.app:/oauth2redirect?code=c", true},
		{"http://127.0.0.1:51234/cb", "http://127.0.0.1:51234/cb?code=c", true},
		{"https://app.example/cb", "https://app.example/cb2?code=c", false},
		{"https://app.example/cb", "https://app.example.evil/cb?code=c", false},
		{"https://app.example/cb", "http://app.example/cb?code=c", false},
		{"https://app.example/cb", "https://app.example/CB?code=c", false},
		{"http://127.0.0.1:51234/cb", "http://127.0.0.1:51235/cb?code=c", false},
	} {
		b := &binding{Redirect: tc.redirectURI, Expires: now().Unix() + 60}
		target, _, state, ok := codeRedirect(base, tc.location)
		if !ok {
			t.Fatalf("codeRedirect(%q) failed", tc.location)
		}
		if got := b.matchesRedirect(target, state); got != tc.match {
			t.Errorf("redirect_uri %q, Location %q: match %v, want %v", tc.redirectURI, tc.location, got, tc.match)
		}
	}
}

// TestMatchesRedirectState checks the state comparison of a pending
// request.
func TestMatchesRedirectState(t *testing.T) {
	with := &binding{Redirect: "https://a/cb", State: digest("s1"), Expires: now().Unix() + 60}
	without := &binding{Redirect: "https://a/cb", Expires: now().Unix() + 60}
	expired := &binding{Redirect: "https://a/cb", Expires: now().Unix() - 1}
	conflict := &binding{Redirect: "https://a/cb", Conflict: true, Expires: now().Unix() + 60}
	for _, tc := range []struct {
		b     *binding
		state string
		want  bool
	}{
		{with, "s1", true}, {with, "s2", false}, {with, "", false},
		{without, "", true}, {without, "s1", false},
		{expired, "", false}, {conflict, "", false},
	} {
		if got := tc.b.matchesRedirect("https://a/cb", tc.state); got != tc.want {
			t.Errorf("%+v with state %q: %v, want %v", tc.b, tc.state, got, tc.want)
		}
	}
}

// FuzzCodeRedirect feeds arbitrary Locations to the code extraction.
func FuzzCodeRedirect(f *testing.F) {
	for _, s := range []string{
		"https://app.example/cb?code=c1&state=s1",
		"https://app.example/cb#code=c1",
		"com.example.app:/cb?code=x",
		"/cb?code=a&code=b",
		"https://[::1]:443/cb?code=%41",
		"//evil.example/cb?code=c",
	} {
		f.Add(s)
	}
	base, _ := url.Parse("https://sso.example.com/realms/x/protocol/openid-connect/auth")
	f.Fuzz(func(t *testing.T, location string) {
		target, code, state, ok := codeRedirect(base, location)
		if !ok {
			return
		}
		if code == "" || target == "" {
			t.Fatalf("ok with code %q target %q", code, target)
		}
		// The target never carries the response parameters.
		if u, err := url.Parse(target); err == nil && (u.RawQuery != "" || u.Fragment != "") && u.Opaque == "" {
			t.Fatalf("target %q keeps a query or fragment", target)
		}
		_ = state
	})
}
