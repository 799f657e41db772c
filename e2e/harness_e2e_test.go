package e2e

import (
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// The harness itself: chromium logs in at the demo provider directly, with
// no plugin involved, and is sent to the registered redirect URI with a
// code. When this fails, the other tests' failures say nothing about the
// plugin.
func TestHarnessProviderLoginInBrowser(t *testing.T) {
	b := newBrowser(t)
	tb := b.tab()
	redirectURI := stack.site + "/oauth2/callback"
	conf := &oauth2.Config{
		ClientID:    "demo",
		RedirectURL: redirectURI,
		Scopes:      []string{"openid"},
		Endpoint:    oauth2.Endpoint{AuthURL: stack.issuer + opPath(t, "authorization_endpoint")},
	}
	tb.open(conf.AuthCodeURL("harness-state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	tb.waitLoginForm()
	tb.typeCredentials(user, password)
	loc := tb.waitURL("the redirect URI", func(u string) bool { return strings.HasPrefix(u, redirectURI+"?") })
	u, _ := url.Parse(loc)
	if u.Query().Get("code") == "" || u.Query().Get("state") != "harness-state" {
		t.Errorf("the provider redirected to %s, want a code and state=harness-state", loc)
	}
}
