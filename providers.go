package pkceauth

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// Named providers. A pkce_auth handler either carries every setting itself
// (inline) or names providers declared once in the pkce app (app.go). Each
// named provider is one provider-level *PKCEAuth, provisioned once by the
// app, that owns what must be shared: discovery and JWKS, the session keys,
// the session store and its cache, the refresh single-flight, the cookie
// jars, metrics and events. A referencing handler keeps only route
// settings and hands every provider-level step (callback, logout, session
// check, login start) to the provider's instance; an inline handler is its
// own provider-level instance. That is why ServeHTTP works on p.cores.

// routeFields are the JSON names of the settings that belong to a route,
// not to a provider: a handler that names providers may set only these,
// and a provider declaration none of them. A new handler setting is
// provider-level unless it is listed here.
var routeFields = map[string]bool{
	"providers":              true,
	"headers":                true,
	"claims":                 true,
	"pass_access_token":      true,
	"keep_cookies":           true,
	"allow":                  true,
	"deny":                   true,
	"allow_unverified_email": true,
	"require_acr":            true,
	"max_age":                true,
	"pass_unauthenticated":   true,
	"bearer":                 true,
	"api_match":              true,
	"navigation_match":       true,
	"assertion":              true,
	"userinfo_path":          true,
}

// setFields returns the JSON names of p's config fields that are set,
// route ones (route true) or provider-level ones (route false).
func (p *PKCEAuth) setFields(route bool) []string {
	var names []string
	v := reflect.ValueOf(p).Elem()
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "" || name == "-" || routeFields[name] != route {
			continue
		}
		if !v.Field(i).IsZero() {
			names = append(names, name)
		}
	}
	return names
}

// refuseProviderSettings is the error for a handler that names providers
// and also sets provider-level settings (or nil).
func (p *PKCEAuth) refuseProviderSettings() error {
	set := p.setFields(false)
	if len(set) == 0 {
		return nil
	}
	return fmt.Errorf("pkce_auth with providers %s: %s %s provider-level; set %s in the provider's declaration (global pkce option), or configure this handler inline without providers",
		strings.Join(p.Providers, ", "), strings.Join(set, ", "), plural(len(set), "is", "are"), plural(len(set), "it", "them"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// validProviderName: names become part of cookie names and paths.
func validProviderName(name string) bool {
	if name == "" || len(name) > 32 {
		return false
	}
	for _, c := range name {
		if !(c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// provisionReferences sets up a handler that names providers: it finds
// them in the pkce app and tells each what this route needs kept in its
// sessions. Provider-level settings are refused by Validate.
func (p *PKCEAuth) provisionReferences(ctx caddy.Context) error {
	p.logger = ctx.Logger()
	appIface, err := ctx.AppIfConfigured(appName)
	if errors.Is(err, caddy.ErrNotConfigured) {
		return fmt.Errorf("providers %s: no pkce app is configured; declare the providers in the global pkce option (or the pkce app in JSON)", strings.Join(p.Providers, ", "))
	}
	if err != nil {
		return err
	}
	app := appIface.(*App)
	for i, name := range p.Providers {
		if slices.Index(p.Providers, name) != i {
			return fmt.Errorf("providers: %s is named twice", name)
		}
		np := app.Providers[name]
		if np == nil {
			return fmt.Errorf("providers: unknown provider %q; the pkce app declares %s", name, strings.Join(app.names(), ", "))
		}
		p.cores = append(p.cores, &np.PKCEAuth)
	}
	return p.provisionRoute(ctx)
}

// provisionRoute prepares the route settings and registers what the route
// needs with its providers, before any request: claims for headers and
// placeholders must be kept in the session at login, whichever route the
// login happens on.
func (p *PKCEAuth) provisionRoute(ctx caddy.Context) error {
	var err error
	if p.access, err = p.compileAccess(); err != nil {
		return err
	}
	if err := p.provisionClassify(ctx); err != nil {
		return err
	}
	p.provisionBearer()
	p.userinfoPath = userinfoPathOf(p.UserinfoPath)
	if p.Assertion != nil {
		p.Assertion.setDefaults()
		if err := p.provisionAssertion(ctx, caddy.NewReplacer()); err != nil {
			return err
		}
	}
	p.headerNames = sortedKeys(p.Headers)
	p.headerClaims = make([]string, len(p.headerNames))
	for i, h := range p.headerNames {
		p.headerClaims[i] = p.Headers[h]
	}
	p.passBearer = p.PassAccessToken != "" && http.CanonicalHeaderKey(p.PassAccessToken) == "Authorization"
	for _, c := range p.cores {
		c.need(p.Claims...)
		c.need(p.headerClaims...)
		if p.Assertion != nil {
			c.need(p.Assertion.Claims...)
		}
		for _, path := range p.access.paths() {
			if !slices.Contains(c.ruleClaimPaths, path) {
				c.ruleClaimPaths = append(c.ruleClaimPaths, path)
			}
		}
		if p.PassAccessToken != "" {
			c.keepAccessToken = true
			c.passBearer = c.passBearer || p.passBearer
		}
	}
	return nil
}

// need adds claims (dotted paths) to those the provider's sessions keep.
// Handlers call it while they are provisioned, before requests are served.
func (p *PKCEAuth) need(claims ...string) {
	for _, c := range claims {
		if c != "" && !slices.Contains(p.keepClaims, c) {
			p.keepClaims = append(p.keepClaims, c)
		}
	}
}

// validateReferences checks a handler that names providers: route settings
// only, and providers that can share one route.
func (p *PKCEAuth) validateReferences() error {
	if err := p.refuseProviderSettings(); err != nil {
		return err
	}
	if err := p.validateRoute(); err != nil {
		return err
	}
	// Every provider's callback and logout path is answered on this
	// route, so none may shadow another.
	paths := map[string]string{}
	for _, c := range p.cores {
		for _, path := range []string{c.CallbackPath, c.LogoutPath} {
			if other, dup := paths[path]; dup {
				return fmt.Errorf("providers %s and %s both use the path %s on this route; give each its own callback_path and logout_path", other, c.providerName, path)
			}
			paths[path] = c.providerName
		}
	}
	return nil
}

// validateRoute checks the route settings, inline or not.
func (p *PKCEAuth) validateRoute() error {
	if err := p.validateAccess(); err != nil {
		return err
	}
	if err := p.validateBearer(); err != nil {
		return err
	}
	if err := p.validateEndpoints(); err != nil {
		return err
	}
	for h := range p.Headers {
		if !validHeaderName(h) {
			return fmt.Errorf("headers: %q is not a valid header name", h)
		}
		if p.Headers[h] == "" {
			return fmt.Errorf("headers: %s needs a claim", h)
		}
	}
	if h := p.PassAccessToken; h != "" {
		if !validHeaderName(h) {
			return fmt.Errorf("pass_access_token: %q is not a valid header name", h)
		}
		for name := range p.Headers {
			if http.CanonicalHeaderKey(name) == http.CanonicalHeaderKey(h) {
				return fmt.Errorf("pass_access_token: header %s is also set from a claim in headers; use another name", h)
			}
		}
	}
	return nil
}

// stripOtherProviders removes the cookies of the route's other providers
// from the request passed upstream (the signing-in provider's are removed
// by the caller).
func (p *PKCEAuth) stripOtherProviders(r *http.Request, signedIn *cookieJar) {
	for _, c := range p.cores {
		if jar := c.cookies(r); jar != signedIn {
			jar.stripCookies(r)
		}
	}
}
