package pkceauth

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Request classification: whether a request without a session may be
// redirected to the provider's login (a browser navigation) or gets 401
// (XHR, fetch, API clients, anything else). A redirect answered to a
// script is useless at best (the script cannot follow it cross-origin) and
// leaves a login cookie behind, so when in doubt a request is an API call.
//
// The decision, in order:
//
//  1. matches api_match                                  → API
//  2. method other than GET or HEAD                      → API
//  3. X-Requested-With present                           → API
//  4. Sec-Fetch-Mode present and not "navigate"          → API
//  5. Sec-Fetch-Dest present and not document/iframe/frame → API
//  6. matches navigation_match                           → navigation
//  7. Sec-Fetch-Mode "navigate"                          → navigation
//  8. Accept lists text/html before any JSON type        → navigation
//  9. otherwise                                          → API
//
// Rules 2 to 5 cannot be overridden by navigation_match: a script's request
// never receives a redirect to the provider.

// requestClass is what the classification decides.
type requestClass uint8

const (
	apiRequest requestClass = iota
	navigationRequest
)

// classify applies the configured matchers around the built-in rules.
// A matcher that fails (an expression error, say) makes the request an API
// call: a 401 is the answer that cannot hurt.
func (p *PKCEAuth) classify(r *http.Request) requestClass {
	if len(p.apiMatch) > 0 {
		if match, err := p.apiMatch.AnyMatchWithError(r); match || err != nil {
			return apiRequest
		}
	}
	if !mayNavigate(r) {
		return apiRequest
	}
	if len(p.navigationMatch) > 0 {
		match, err := p.navigationMatch.AnyMatchWithError(r)
		if err != nil {
			return apiRequest
		}
		if match {
			return navigationRequest
		}
	}
	if r.Header.Get("Sec-Fetch-Mode") == "navigate" || prefersHTML(r) {
		return navigationRequest
	}
	return apiRequest
}

// mayNavigate is false for requests that are certainly not top-level
// browser navigations: other methods, XHR, and anything Fetch Metadata
// marks as a script's request or a subresource.
func mayNavigate(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	h := r.Header
	if h.Get("X-Requested-With") != "" {
		return false
	}
	if mode := h.Get("Sec-Fetch-Mode"); mode != "" && mode != "navigate" {
		return false
	}
	switch h.Get("Sec-Fetch-Dest") {
	case "", "document", "iframe", "frame":
		return true
	}
	return false
}

// prefersHTML reports whether the Accept header lists text/html before any
// JSON type; browsers send text/html first on navigations.
func prefersHTML(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	html := strings.Index(accept, "text/html")
	if html < 0 {
		return false
	}
	jsonAt := strings.Index(accept, "json")
	return jsonAt < 0 || html < jsonAt
}

// wantsHTML decides between the HTML and the JSON error body.
func wantsHTML(r *http.Request) bool {
	if r.Header.Get("Sec-Fetch-Mode") == "navigate" {
		return true
	}
	return prefersHTML(r) || r.Header.Get("Accept") == ""
}

// provisionClassify loads the api_match and navigation_match matchers.
func (p *PKCEAuth) provisionClassify(ctx caddy.Context) error {
	for _, m := range []struct {
		field string
		raw   caddyhttp.RawMatcherSets
		dst   *caddyhttp.MatcherSets
	}{
		{"APIMatchRaw", p.APIMatchRaw, &p.apiMatch},
		{"NavigationMatchRaw", p.NavigationMatchRaw, &p.navigationMatch},
	} {
		if len(m.raw) == 0 {
			continue
		}
		sets, err := ctx.LoadModule(p, m.field)
		if err != nil {
			return fmt.Errorf("loading %s matchers: %v", jsonName(m.field), err)
		}
		if err := m.dst.FromInterface(sets); err != nil {
			return fmt.Errorf("%s: %v", jsonName(m.field), err)
		}
	}
	return nil
}

func jsonName(field string) string {
	if field == "APIMatchRaw" {
		return "api_match"
	}
	return "navigation_match"
}
