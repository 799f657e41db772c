package pkceauth

import (
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption(appName, parseGlobalOption)
}

// parseGlobalOption sets up the pkce app from the global option of the
// same name. Syntax:
//
//	{
//	    pkce {
//	        provider <name> {
//	            display_name <text>
//	            <any pkce_auth subdirective except header, claims,
//	             pass_access_token and keep_cookies>
//	        }
//	        provider <name> { ... }
//	    }
//	}
//
// Each provider block fills providers.<name> of the app; its
// subdirectives are those of pkce_auth with the same JSON names.
// Handlers then name providers: `pkce_auth [<matcher>] <name...> { ... }`.
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	if existing != nil {
		return nil, d.Err("the pkce global option may be given only once; declare all providers in it")
	}
	d.Next() // consume option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for d.NextBlock(0) {
		if d.Val() != "provider" {
			return nil, d.Errf("unrecognized pkce option %s (declare providers with: provider <name> { ... })", d.Val())
		}
		if !d.NextArg() {
			return nil, d.Err("provider needs a name: provider <name> { ... }")
		}
		name := d.Val()
		if !validProviderName(name) {
			return nil, d.Errf("provider %q: a name has letters, digits and - only, at most 32", name)
		}
		if d.NextArg() {
			return nil, d.ArgErr()
		}
		if _, dup := app.Providers[name]; dup {
			return nil, d.Errf("provider %s is declared twice", name)
		}
		np := new(NamedProvider)
		displayName := false
		err := np.unmarshalBlock(d, func(sub string) (bool, error) {
			if sub != "display_name" {
				return false, nil
			}
			if displayName {
				return true, d.Errf("provider %s: display_name may be given only once", name)
			}
			displayName = true
			return true, oneArg(d, &np.DisplayName)
		})
		if err != nil {
			return nil, err
		}
		if err := np.refuseRouteSettings(name); err != nil {
			return nil, d.Err(err.Error())
		}
		if app.Providers == nil {
			app.Providers = make(map[string]*NamedProvider)
		}
		app.Providers[name] = np
	}
	if len(app.Providers) == 0 {
		return nil, d.Err("pkce: declare at least one provider: provider <name> { ... }")
	}
	return httpcaddyfile.App{Name: appName, Value: caddyconfig.JSON(app, nil)}, nil
}
