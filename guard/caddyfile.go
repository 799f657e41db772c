package pkceguard

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("pkce_guard", parseCaddyfile)
	// The guard must see requests before they are proxied to the
	// authorization server.
	httpcaddyfile.RegisterDirectiveOrder("pkce_guard", httpcaddyfile.Before, "reverse_proxy")
}

// parseCaddyfile sets up the handler from Caddyfile tokens; see
// UnmarshalCaddyfile for the syntax.
func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	g := new(Guard)
	if err := g.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return g, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	pkce_guard [<matcher>] {
//	    authorization_paths       <path...>
//	    token_paths               <path...>
//	    discovery_paths           <path...>
//	    methods                   S256|plain...
//	    verifier_length           <min> [<max>]
//	    exempt_clients            <client_id...>
//	    confidential_without_pkce
//	    redirect_uris             <client_id> <uri...>
//	    binding_lifetime          <duration>
//	    cookie_keys               <key...>
//	    store                     memory|redis|storage [{
//	        ...
//	    }]
//	}
//
// Every subdirective may be given once, except redirect_uris, once per
// client. Without a block, every default applies.
func (g *Guard) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		sub := d.Val()
		if sub != "redirect_uris" {
			if seen[sub] {
				return d.Errf("%s may be given only once", sub)
			}
			seen[sub] = true
		}
		switch sub {
		case "authorization_paths", "token_paths", "discovery_paths", "methods", "exempt_clients", "cookie_keys":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			switch sub {
			case "authorization_paths":
				g.AuthorizationPaths = args
			case "token_paths":
				g.TokenPaths = args
			case "discovery_paths":
				g.DiscoveryPaths = args
			case "methods":
				for _, m := range args {
					if m != methodS256 && m != methodPlain {
						return d.Errf("methods: unknown code_challenge_method %q; use S256 (or plain, not recommended)", m)
					}
				}
				g.Methods = args
			case "exempt_clients":
				g.ExemptClients = args
			case "cookie_keys":
				g.CookieKeys = args
			}

		case "verifier_length":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.ArgErr()
			}
			for i, a := range args {
				n, err := strconv.Atoi(a)
				if err != nil || n < minVerifierLength || n > maxVerifierLength {
					return d.Errf("verifier_length: %q is not a number from %d to %d (RFC 7636 section 4.1)", a, minVerifierLength, maxVerifierLength)
				}
				if i == 0 {
					g.MinVerifierLength = n
				} else {
					g.MaxVerifierLength = n
				}
			}

		case "confidential_without_pkce":
			if d.NextArg() {
				return d.ArgErr()
			}
			g.ConfidentialWithoutPKCE = true

		case "redirect_uris":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.Errf("redirect_uris needs a client_id and at least one URI")
			}
			if g.RedirectURIs == nil {
				g.RedirectURIs = map[string][]string{}
			}
			if _, dup := g.RedirectURIs[args[0]]; dup {
				return d.Errf("redirect_uris for client %q may be given only once; list all its URIs on one line", args[0])
			}
			for _, u := range args[1:] {
				if err := checkRedirectURI(u); err != nil {
					return d.Errf("redirect_uris: client %q: %v", args[0], err)
				}
			}
			g.RedirectURIs[args[0]] = args[1:]

		case "binding_lifetime":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur <= 0 {
				return d.Errf("binding_lifetime must be a positive duration such as 10m, not %q", d.Val())
			}
			g.BindingLifetime = caddy.Duration(dur)
			if d.NextArg() {
				return d.ArgErr()
			}

		case "store":
			if !d.NextArg() {
				return d.ArgErr()
			}
			name := d.Val()
			unm, err := caddyfile.UnmarshalModule(d, "http.handlers.pkce_guard.stores."+name)
			if err != nil {
				return err
			}
			g.StoreRaw = caddyconfig.JSONModuleObject(unm, "type", name, nil)

		default:
			return d.Errf("unrecognized subdirective %s", sub)
		}
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Guard)(nil)
