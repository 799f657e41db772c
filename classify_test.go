package pkceauth

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Header sets of real clients for the classification tables.
var (
	chromeNavigation = map[string]string{
		"Accept":         "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
		"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-Site": "none",
	}
	chromeFetch = map[string]string{"Accept": "*/*", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}
)

// provisionedClassifier is a handler with only the classification matchers
// loaded, as Provision loads them.
func provisionedClassifier(t *testing.T, api, navigation string) *PKCEAuth {
	t.Helper()
	p := &PKCEAuth{}
	if api != "" {
		if err := json.Unmarshal([]byte(api), &p.APIMatchRaw); err != nil {
			t.Fatal(err)
		}
	}
	if navigation != "" {
		if err := json.Unmarshal([]byte(navigation), &p.NavigationMatchRaw); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := p.provisionClassify(ctx); err != nil {
		t.Fatalf("provisionClassify: %v", err)
	}
	return p
}

// TestClassify is the decision table of README's "How a request is
// classified", with and without the matchers.
func TestClassify(t *testing.T) {
	plain := provisionedClassifier(t, "", "")
	configured := provisionedClassifier(t,
		`[{"path": ["/api/*"]}, {"header": {"X-Api-Client": ["*"]}}]`,
		`[{"path": ["/docs/*"]}]`)
	cases := []struct {
		name       string
		p          *PKCEAuth
		method     string
		path       string
		header     map[string]string
		navigation bool
	}{
		// The built-in rules.
		{"chrome navigation", plain, "GET", "/", chromeNavigation, true},
		{"HEAD navigation", plain, "HEAD", "/", map[string]string{"Sec-Fetch-Mode": "navigate"}, true},
		{"iframe navigation", plain, "GET", "/", map[string]string{"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}, true},
		{"old browser, HTML first", plain, "GET", "/", map[string]string{"Accept": "text/html,*/*;q=0.8"}, true},
		{"fetch", plain, "GET", "/", chromeFetch, false},
		{"fetch asking for HTML", plain, "GET", "/", map[string]string{"Accept": "text/html", "Sec-Fetch-Mode": "cors"}, false},
		{"navigate mode but an embed", plain, "GET", "/", map[string]string{"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "embed"}, false},
		{"image load", plain, "GET", "/", map[string]string{"Accept": "text/html", "Sec-Fetch-Dest": "image"}, false},
		{"script load", plain, "GET", "/", map[string]string{"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "script"}, false},
		{"jQuery XHR", plain, "GET", "/", map[string]string{"Accept": "text/html", "X-Requested-With": "XMLHttpRequest"}, false},
		{"form POST navigation", plain, "POST", "/", chromeNavigation, false},
		{"DELETE", plain, "DELETE", "/", map[string]string{"Accept": "text/html"}, false},
		{"JSON before HTML", plain, "GET", "/", map[string]string{"Accept": "application/json, text/html"}, false},
		{"curl", plain, "GET", "/", map[string]string{"Accept": "*/*"}, false},
		{"no headers", plain, "GET", "/", nil, false},

		// api_match demotes anything, navigations included.
		{"api path navigation", configured, "GET", "/api/users", chromeNavigation, false},
		{"api header navigation", configured, "GET", "/", withAPIClient(chromeNavigation), false},
		{"navigation elsewhere", configured, "GET", "/app", chromeNavigation, true},

		// navigation_match promotes what the built-in rules leave open.
		{"curl on docs", configured, "GET", "/docs/intro", map[string]string{"Accept": "*/*"}, true},
		{"no headers on docs", configured, "GET", "/docs/", nil, true},
		{"curl elsewhere", configured, "GET", "/app", map[string]string{"Accept": "*/*"}, false},
		// ... but never a script's request.
		{"fetch on docs", configured, "GET", "/docs/intro", chromeFetch, false},
		{"XHR on docs", configured, "GET", "/docs/intro", map[string]string{"X-Requested-With": "XMLHttpRequest"}, false},
		{"POST on docs", configured, "POST", "/docs/intro", nil, false},
		{"image on docs", configured, "GET", "/docs/a.png", map[string]string{"Sec-Fetch-Dest": "image"}, false},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, "http://app.example"+c.path, nil)
		for k, v := range c.header {
			r.Header.Set(k, v)
		}
		caddyhttp.NewTestReplacer(r)
		got := c.p.classify(r) == navigationRequest
		if got != c.navigation {
			t.Errorf("%s: navigation = %v, want %v", c.name, got, c.navigation)
		}
	}
}

func withAPIClient(h map[string]string) map[string]string {
	out := map[string]string{"X-Api-Client": "cli/1.0"}
	for k, v := range h {
		out[k] = v
	}
	return out
}

// TestProvisionClassifyUnknownMatcher: a matcher module that does not
// exist fails the config load with the field's name.
func TestProvisionClassifyUnknownMatcher(t *testing.T) {
	p := &PKCEAuth{APIMatchRaw: caddyhttp.RawMatcherSets{{"no_such_matcher": json.RawMessage(`{}`)}}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	err := p.provisionClassify(ctx)
	if err == nil {
		t.Fatal("provisioned an unknown matcher")
	}
	if want := "api_match"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name %s", err, want)
	}
}
