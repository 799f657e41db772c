package pkceauth

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(App{})
}

// appName is the pkce app's module ID.
const appName = "pkce"

// App declares OpenID providers, with their session settings, once, by
// name, for any number of pkce_auth handlers in any site to use through
// their `providers` field. Each provider is set up once per config load:
// all handlers naming it share its discovery and key cache, its session
// store connection, its session keys and its session cookie, so one login
// serves every route that names it.
type App struct {
	// The providers by name (letters, digits and -; the name appears in
	// cookie names and default paths). Each takes every pkce_auth setting
	// except the route settings (headers, claims, pass_access_token,
	// keep_cookies, providers), which each handler sets for itself, plus
	// display_name. Defaults differ from the inline form so that
	// providers do not collide: callback_path `/oauth2/<name>/callback`,
	// logout_path `/oauth2/<name>/logout`, cookie_name
	// `pkce_session_<name>`. Default: none.
	Providers map[string]*NamedProvider `json:"providers,omitempty"`

	logger *zap.Logger
}

// NamedProvider is one provider of the pkce app: the provider-level
// settings of pkce_auth (see PKCEAuth) and how the chooser names it.
type NamedProvider struct {
	// The name shown on the provider chooser, the page a browser without
	// a session gets on a route with several providers. Default: the
	// provider's name.
	DisplayName string `json:"display_name,omitempty"`

	PKCEAuth
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  appName,
		New: func() caddy.Module { return new(App) },
	}
}

// Provision sets up every provider once. Like an inline handler, a
// provider does no network I/O here: discovery runs in the background.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	for _, name := range a.names() {
		np := a.Providers[name]
		if err := a.applyNamedDefaults(name, np); err != nil {
			return err
		}
		c := &np.PKCEAuth
		if err := c.provisionCore(ctx, a.logger.With(zap.String("provider", name))); err != nil {
			return fmt.Errorf("provider %s: %v", name, err)
		}
	}
	return nil
}

// refuseRouteSettings is the error for a provider declaration that sets
// route settings (or nil).
func (p *PKCEAuth) refuseRouteSettings(name string) error {
	set := p.setFields(true)
	if len(set) == 0 {
		return nil
	}
	return fmt.Errorf("provider %s: %s %s; set %s on each pkce_auth handler that names the provider",
		name, strings.Join(set, ", "), plural(len(set), "is a route setting", "are route settings"), plural(len(set), "it", "them"))
}

// applyNamedDefaults checks a declaration's name and route settings and
// sets the defaults that derive from the name.
func (a *App) applyNamedDefaults(name string, np *NamedProvider) error {
	if np == nil {
		return fmt.Errorf("providers: %s has no settings", name)
	}
	if !validProviderName(name) {
		return fmt.Errorf("providers: %q is not a valid provider name (letters, digits and - only, at most 32)", name)
	}
	c := &np.PKCEAuth
	if err := c.refuseRouteSettings(name); err != nil {
		return err
	}
	c.providerName = name
	c.displayName = np.DisplayName
	if c.displayName == "" {
		c.displayName = name
	}
	if c.CallbackPath == "" {
		c.CallbackPath = "/oauth2/" + name + "/callback"
	}
	if c.LogoutPath == "" {
		c.LogoutPath = "/oauth2/" + name + "/logout"
	}
	if c.CookieName == "" {
		c.CookieName = defaultCookieName + "_" + name
	}
	return nil
}

// Validate checks every provider, and that their cookies cannot be taken
// for one another's.
func (a *App) Validate() error {
	if len(a.Providers) == 0 {
		return errors.New("pkce: no providers are declared")
	}
	names := a.names()
	for _, name := range names {
		if err := a.Providers[name].PKCEAuth.Validate(); err != nil {
			return fmt.Errorf("provider %s: %v", name, err)
		}
	}
	for _, x := range names {
		for _, y := range names {
			cx, cy := a.Providers[x].CookieName, a.Providers[y].CookieName
			if x != y && (cx == cy || strings.HasPrefix(cy, cx+"_")) {
				return fmt.Errorf("providers %s and %s: cookie_name %s and %s collide (session cookies are split into <name>_1, <name>_2...); choose other names", x, y, cx, cy)
			}
		}
	}
	return nil
}

// Start does nothing: providers are discovered in the background and
// serve through the handlers.
func (a *App) Start() error { return nil }

// Stop does nothing; Cleanup releases the providers.
func (a *App) Stop() error { return nil }

// Cleanup stops each provider's background discovery and releases its
// session store.
func (a *App) Cleanup() error {
	for _, np := range a.Providers {
		if np != nil {
			_ = np.PKCEAuth.Cleanup()
		}
	}
	return nil
}

// names returns the provider names, sorted.
func (a *App) names() []string {
	names := make([]string, 0, len(a.Providers))
	for name := range a.Providers {
		names = append(names, name)
	}
	sort.Strings(names)
	return slices.Clip(names)
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
