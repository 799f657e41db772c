package pkceauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// TestExposeIdentityNested: when two pkce_auth handlers run on one request
// (nested routes), the later one's identity is what the placeholders show,
// whether the earlier one signed someone in or let the request through
// anonymously; nothing of the earlier identity shows through.
func TestExposeIdentityNested(t *testing.T) {
	outer := (&PKCEAuth{providerName: "social"}).activate(&session{Subject: "mallory", UserID: "mallory", Email: "ceo@corp.example", Expires: 1 << 40})
	inner := (&PKCEAuth{providerName: "corp"}).activate(&session{Subject: "bob", UserID: "bob", Email: "bob@corp.example", Expires: 1 << 40})
	request := func() (*http.Request, *caddy.Replacer) {
		r := httptest.NewRequest(http.MethodGet, "http://site.test/", nil)
		*r = *r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
		return r, caddyhttp.NewTestReplacer(r)
	}
	for _, c := range []struct {
		name         string
		first, later *activeSession
		want         map[string]string
	}{
		{"session then session", outer, inner, map[string]string{"id": "bob", "email": "bob@corp.example", "provider": "corp"}},
		{"anonymous then session", nil, inner, map[string]string{"id": "bob", "email": "bob@corp.example", "provider": "corp"}},
		{"session then anonymous", outer, nil, map[string]string{"id": "", "email": "", "provider": ""}},
		{"one handler", nil, outer, map[string]string{"id": "mallory", "email": "ceo@corp.example", "provider": "social"}},
	} {
		r, repl := request()
		if c.name != "one handler" {
			exposeIdentity(r, c.first)
		}
		exposeIdentity(r, c.later)
		for k, want := range c.want {
			if got, _ := repl.GetString("http.auth.user." + k); got != want {
				t.Errorf("%s: {http.auth.user.%s} = %q, want %q", c.name, k, got, want)
			}
		}
	}
}
