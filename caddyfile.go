package pkceauth

import (
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("pkce_auth", parseCaddyfile)
	// Authentication runs before Caddy's own basic_auth, so both can be
	// combined and anything after (templates, reverse_proxy, file_server)
	// sees the {http.auth.user.*} placeholders.
	httpcaddyfile.RegisterDirectiveOrder("pkce_auth", httpcaddyfile.Before, "basic_auth")
}

// parseCaddyfile sets up the handler from Caddyfile tokens; see
// UnmarshalCaddyfile for the syntax.
func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	p := new(PKCEAuth)
	if err := p.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return p, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	pkce_auth [<matcher>] [<provider...>] {
//	    issuer                 <url>
//	    discovery_url          <url>
//	    authorization_endpoint <url>
//	    token_endpoint         <url>
//	    userinfo_endpoint      <url>
//	    jwks_uri               <url>
//	    end_session_endpoint   <url>
//	    client_id              <id>
//	    client_secret          <secret>
//	    client_auth_method     basic|post|none
//	    scopes                 <scope...>
//	    auth_param             <name> <value>
//	    forward_auth_params    <name...>
//	    redirect_url           <url>
//	    response_mode          query|form_post
//	    callback_path          <path>
//	    logout_path            <path>
//	    post_logout_redirect   <path>
//	    session_lifetime       <duration>
//	    idle_timeout           <duration>|off
//	    login_timeout          <duration>
//	    max_pending_logins     <n>
//	    cookie_name            <name>
//	    cookie_domain          <domain>
//	    cookie_path            <path>
//	    cookie_same_site       lax|strict|none
//	    cookie_secure          auto|always|never
//	    session_keys           <key...>
//	    user_id_claim          <claim>
//	    groups_claim           <dotted.path>
//	    claims                 <dotted.path...>
//	    signing_algs           <alg...>
//	    pkce_method            S256|plain
//	    require_s256_discovery
//	    userinfo
//	    timeout                <duration>
//	    clock_skew             <duration>
//	    header                 <field> <claim>
//	    keep_cookies
//	    session {
//	        store cookie|caddy_storage
//	        store redis [<address...>] {
//	            addresses      <address...>
//	            username       <user>
//	            password       <password>
//	            db             <n>
//	            master_name    <name>
//	            cluster
//	            tls [{
//	                insecure_skip_verify
//	                server_name <name>
//	            }]
//	            key_prefix     <prefix>
//	            pool_size      <n>
//	            dial_timeout   <duration>
//	            read_timeout   <duration>
//	            write_timeout  <duration>
//	        }
//	        cache_ttl  <duration>|off
//	        cache_size <n>
//	    }
//	    refresh                    on|off
//	    refresh_leeway             <duration>
//	    refresh_on                 access_token|id_token
//	    keep_session_when_idp_down
//	    pass_access_token          [<header>]
//	    allow                      email|group <value...>
//	    allow                      claim|claim_regex <dotted.path> <value...>
//	    allow {
//	        email       <address|pattern...>
//	        group       <group...>
//	        claim       <dotted.path> <value...>
//	        claim_regex <dotted.path> <regexp...>
//	    }
//	    deny                       (as allow)
//	    allow_unverified_email
//	    require_acr                <acr...>
//	    max_age                    <duration>
//	    pass_unauthenticated
//	    bearer {
//	        audiences       <aud...>
//	        required_scopes <scope...>
//	        require_at_jwt
//	        only
//	        max_token_size  <bytes>
//	        cache_size      <n>
//	        resource_metadata [{
//	            resource         <https-url>
//	            scopes_supported <scope...>
//	        }]
//	    }
//	    api_match        <matchers> | { <matchers> }
//	    navigation_match <matchers> | { <matchers> }
//	    assertion {
//	        header    <field>
//	        audience  <aud>
//	        claims    <claim...>
//	        lifetime  <duration>
//	        issuer    <iss>
//	        key_files <pem-file...>
//	        jwks_path <path>|off
//	    }
//	    userinfo_path              <path>|off
//	}
//
// Provider names after the matcher fill providers: the providers declared
// in the global pkce option (app.go), and the block then holds only route
// settings. Each subdirective sets the JSON field of the same name (auth_param fills
// auth_params, header fills headers) and may be given once, except
// auth_param and header, which may be repeated with different names, and
// allow and deny, each one rule appended to allow or deny (see
// unmarshalRule).
// `idle_timeout off` disables the idle timeout. The session block fills
// session (the redis block session.redis, its addresses also given after
// `store redis`); `cache_ttl off` reads the store on every request.
// `pass_access_token` alone passes the token as `Authorization: Bearer`.
// The bearer block fills bearer (see unmarshalBearer). api_match and
// navigation_match take request matchers as a named matcher does (inline
// or in a block); each one given adds a matcher set, and a request
// matching any set matches. The assertion block fills assertion;
// `jwks_path off` and `userinfo_path off` turn those endpoints off.
// Values are taken as written:
// placeholders such as {env.OIDC_CLIENT_SECRET} are resolved when the
// handler is provisioned, and enumerations and ranges are checked by
// Validate.
func (p *PKCEAuth) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	// Arguments name providers declared in the global pkce option.
	for _, name := range d.RemainingArgs() {
		if !validProviderName(name) {
			return d.Errf("pkce_auth: %q is not a provider name (letters, digits and -, as declared in the global pkce option); put inline settings in the block", name)
		}
		p.Providers = append(p.Providers, name)
	}
	if err := p.unmarshalBlock(d, nil); err != nil {
		return err
	}
	if len(p.Providers) > 0 {
		if err := p.refuseProviderSettings(); err != nil {
			return d.Err(err.Error())
		}
	}
	return nil
}

// unmarshalBlock reads the settings block at the dispenser's nesting;
// other, when not nil, is offered the subdirectives this function does
// not know (the provider block of the global option adds its own).
func (p *PKCEAuth) unmarshalBlock(d *caddyfile.Dispenser, other func(name string) (bool, error)) error {
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if name != "auth_param" && name != "header" && name != "allow" && name != "deny" && name != "api_match" && name != "navigation_match" {
			if seen[name] {
				return d.Errf("subdirective %s may be given only once", name)
			}
			seen[name] = true
		}

		var err error
		switch name {
		case "issuer":
			err = oneArg(d, &p.Issuer)
		case "discovery_url":
			err = oneArg(d, &p.DiscoveryURL)
		case "authorization_endpoint":
			err = oneArg(d, &p.AuthorizationEndpoint)
		case "token_endpoint":
			err = oneArg(d, &p.TokenEndpoint)
		case "userinfo_endpoint":
			err = oneArg(d, &p.UserinfoEndpoint)
		case "jwks_uri":
			err = oneArg(d, &p.JWKSURI)
		case "end_session_endpoint":
			err = oneArg(d, &p.EndSessionEndpoint)
		case "client_id":
			err = oneArg(d, &p.ClientID)
		case "client_secret":
			err = oneArg(d, &p.ClientSecret)
		case "client_auth_method":
			err = oneArg(d, &p.ClientAuthMethod)
		case "scopes":
			err = someArgs(d, &p.Scopes)
		case "auth_param":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.ArgErr()
			}
			if args[0] == "" {
				return d.Errf("%s needs a non-empty name", name)
			}
			if _, dup := p.AuthParams[args[0]]; dup {
				return d.Errf("auth_param %s is given more than once", args[0])
			}
			if p.AuthParams == nil {
				p.AuthParams = make(map[string]string)
			}
			p.AuthParams[args[0]] = args[1]
		case "forward_auth_params":
			err = someArgs(d, &p.ForwardAuthParams)
		case "redirect_url":
			err = oneArg(d, &p.RedirectURL)
		case "response_mode":
			err = oneArg(d, &p.ResponseMode)
		case "callback_path":
			err = oneArg(d, &p.CallbackPath)
		case "logout_path":
			err = oneArg(d, &p.LogoutPath)
		case "post_logout_redirect":
			err = oneArg(d, &p.PostLogoutRedirect)
		case "session_lifetime":
			err = durationArg(d, name, &p.SessionLifetime)
		case "idle_timeout":
			var v string
			if err = oneArg(d, &v); err == nil {
				if v == "off" {
					p.IdleTimeout = idleTimeoutOff
				} else {
					err = parseDuration(d, name, v, &p.IdleTimeout)
				}
			}
		case "login_timeout":
			err = durationArg(d, name, &p.LoginTimeout)
		case "max_pending_logins":
			var v string
			if err = oneArg(d, &v); err == nil {
				n, convErr := strconv.Atoi(v)
				if convErr != nil {
					return d.Errf("max_pending_logins: %q is not a whole number", v)
				}
				p.MaxPendingLogins = n
			}
		case "cookie_name":
			err = oneArg(d, &p.CookieName)
		case "cookie_domain":
			err = oneArg(d, &p.CookieDomain)
		case "cookie_path":
			err = oneArg(d, &p.CookiePath)
		case "cookie_same_site":
			err = oneArg(d, &p.CookieSameSite)
		case "cookie_secure":
			err = oneArg(d, &p.CookieSecure)
		case "session_keys":
			err = someArgs(d, &p.SessionKeys)
		case "user_id_claim":
			err = oneArg(d, &p.UserIDClaim)
		case "groups_claim":
			err = oneArg(d, &p.GroupsClaim)
		case "claims":
			err = someArgs(d, &p.Claims)
		case "signing_algs":
			err = someArgs(d, &p.SigningAlgs)
		case "pkce_method":
			err = oneArg(d, &p.PKCEMethod)
		case "require_s256_discovery":
			err = setFlag(d, &p.RequireS256Discovery)
		case "userinfo":
			err = setFlag(d, &p.Userinfo)
		case "timeout":
			err = durationArg(d, name, &p.Timeout)
		case "clock_skew":
			err = durationArg(d, name, &p.ClockSkew)
		case "header":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.ArgErr()
			}
			if args[0] == "" {
				return d.Errf("%s needs a non-empty name", name)
			}
			// Header names are case-insensitive: X-User and x-user
			// would set the same header twice.
			for field := range p.Headers {
				if http.CanonicalHeaderKey(field) == http.CanonicalHeaderKey(args[0]) {
					return d.Errf("header %s is given more than once (header names ignore case)", args[0])
				}
			}
			if p.Headers == nil {
				p.Headers = make(map[string]string)
			}
			p.Headers[args[0]] = args[1]
		case "keep_cookies":
			err = setFlag(d, &p.KeepCookies)
		case "session":
			p.Session, err = unmarshalSession(d)
		case "refresh":
			var v string
			if err = oneArg(d, &v); err == nil {
				switch v {
				case "on", "off":
					on := v == "on"
					p.Refresh = &on
				default:
					return d.Errf("refresh must be on or off, not %q", v)
				}
			}
		case "refresh_leeway":
			err = durationArg(d, name, &p.RefreshLeeway)
		case "refresh_on":
			err = oneArg(d, &p.RefreshOn)
		case "keep_session_when_idp_down":
			err = setFlag(d, &p.KeepSessionWhenIdPDown)
		case "pass_access_token":
			switch args := d.RemainingArgs(); len(args) {
			case 0:
				p.PassAccessToken = "Authorization"
			case 1:
				p.PassAccessToken = args[0]
			default:
				return d.ArgErr()
			}
		case "allow", "deny":
			var rule Rule
			if rule, err = unmarshalRule(d, name); err == nil {
				if name == "allow" {
					p.Allow = append(p.Allow, rule)
				} else {
					p.Deny = append(p.Deny, rule)
				}
			}
		case "allow_unverified_email":
			err = setFlag(d, &p.AllowUnverifiedEmail)
		case "require_acr":
			err = someArgs(d, &p.RequireACR)
		case "max_age":
			err = durationArg(d, name, &p.MaxAge)
		case "pass_unauthenticated":
			err = setFlag(d, &p.PassUnauthenticated)
		case "bearer":
			p.Bearer, err = unmarshalBearer(d)
		case "api_match":
			err = appendMatcherSet(d, &p.APIMatchRaw)
		case "navigation_match":
			err = appendMatcherSet(d, &p.NavigationMatchRaw)
		case "assertion":
			p.Assertion, err = unmarshalAssertion(d)
		case "userinfo_path":
			p.UserinfoPath = new(string)
			err = oneArg(d, p.UserinfoPath)
		case "{":
			return d.Err("unexpected '{': pkce_auth subdirectives do not take a block, except session, bearer, assertion, allow, deny, api_match and navigation_match")
		default:
			var known bool
			if other != nil {
				known, err = other(name)
			}
			if !known {
				return d.Errf("unrecognized subdirective %s", name)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unmarshalSession parses the session block.
func unmarshalSession(d *caddyfile.Dispenser) (*SessionConfig, error) {
	if d.NextArg() {
		return nil, d.Errf("session takes no arguments, found %q; put the settings in its block", d.Val())
	}
	cfg := new(SessionConfig)
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] {
			return nil, d.Errf("session: %s may be given only once", name)
		}
		seen[name] = true
		var err error
		switch name {
		case "store":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			cfg.Store = d.Val()
			if cfg.Store == storeRedis {
				cfg.Redis = &RedisConfig{Addresses: d.RemainingArgs()}
				err = unmarshalRedis(d, cfg.Redis)
			} else if d.NextArg() || d.NextBlock(d.Nesting()) {
				return nil, d.Errf("session: store %s takes no arguments or block", cfg.Store)
			}
		case "cache_ttl":
			var v string
			if err = oneArg(d, &v); err == nil {
				if v == "off" {
					cfg.CacheTTL = cacheTTLOff
				} else {
					err = parseDuration(d, name, v, &cfg.CacheTTL)
				}
			}
		case "cache_size":
			err = intArg(d, name, &cfg.CacheSize)
		case "store_id_token":
			var v string
			if err = oneArg(d, &v); err == nil {
				if v != "on" && v != "off" {
					return nil, d.Errf("session: store_id_token must be on or off, not %q", v)
				}
				on := v == "on"
				cfg.StoreIDToken = &on
			}
		default:
			return nil, d.Errf("unrecognized session subdirective %s", name)
		}
		if err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// unmarshalRedis parses the block after `store redis`.
func unmarshalRedis(d *caddyfile.Dispenser, cfg *RedisConfig) error {
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] {
			return d.Errf("redis: %s may be given only once", name)
		}
		seen[name] = true
		var err error
		switch name {
		case "addresses":
			if len(cfg.Addresses) > 0 {
				return d.Errf("redis: addresses are already given after store redis")
			}
			err = someArgs(d, &cfg.Addresses)
		case "username":
			err = oneArg(d, &cfg.Username)
		case "password":
			err = oneArg(d, &cfg.Password)
		case "db":
			err = intArg(d, name, &cfg.DB)
		case "master_name":
			err = oneArg(d, &cfg.MasterName)
		case "sentinel_username":
			err = oneArg(d, &cfg.SentinelUsername)
		case "sentinel_password":
			err = oneArg(d, &cfg.SentinelPassword)
		case "cluster":
			err = setFlag(d, &cfg.Cluster)
		case "tls":
			if d.NextArg() {
				return d.ArgErr()
			}
			cfg.TLS = &RedisTLS{Enabled: true}
			tlsSeen := make(map[string]bool)
			for tlsNesting := d.Nesting(); d.NextBlock(tlsNesting); {
				sub := d.Val()
				if tlsSeen[sub] {
					return d.Errf("redis tls: %s may be given only once", sub)
				}
				tlsSeen[sub] = true
				switch sub {
				case "insecure_skip_verify":
					err = setFlag(d, &cfg.TLS.InsecureSkipVerify)
				case "server_name":
					err = oneArg(d, &cfg.TLS.ServerName)
				case "ca_file":
					err = oneArg(d, &cfg.TLS.CAFile)
				case "client_cert":
					if !d.Args(&cfg.TLS.CertFile, &cfg.TLS.KeyFile) || d.NextArg() {
						return d.Errf("redis tls: client_cert takes <cert_file> <key_file>")
					}
				default:
					return d.Errf("unrecognized redis tls subdirective %s", sub)
				}
				if err != nil {
					return err
				}
			}
		case "key_prefix":
			err = oneArg(d, &cfg.KeyPrefix)
		case "pool_size":
			err = intArg(d, name, &cfg.PoolSize)
		case "dial_timeout":
			err = durationArg(d, name, &cfg.DialTimeout)
		case "read_timeout":
			err = durationArg(d, name, &cfg.ReadTimeout)
		case "write_timeout":
			err = durationArg(d, name, &cfg.WriteTimeout)
		default:
			return d.Errf("unrecognized redis subdirective %s", name)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// intArg reads exactly one whole-number argument of subdirective name.
func intArg(d *caddyfile.Dispenser, name string, dst *int) error {
	var v string
	if err := oneArg(d, &v); err != nil {
		return err
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return d.Errf("%s: %q is not a whole number", name, v)
	}
	*dst = n
	return nil
}

// cacheTTLOff is what `cache_ttl off` stores: any negative value reads the
// store on every request.
const cacheTTLOff = caddy.Duration(-1)

// idleTimeoutOff is what `idle_timeout off` stores: any negative value
// disables the idle timeout.
const idleTimeoutOff = caddy.Duration(-1)

// oneArg reads exactly one argument into dst.
func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// someArgs reads one or more arguments into dst.
func someArgs(d *caddyfile.Dispenser, dst *[]string) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	*dst = args
	return nil
}

// setFlag sets dst for a subdirective that takes no arguments.
func setFlag(d *caddyfile.Dispenser, dst *bool) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	*dst = true
	return nil
}

// durationArg reads exactly one duration argument of subdirective name
// into dst.
func durationArg(d *caddyfile.Dispenser, name string, dst *caddy.Duration) error {
	var v string
	if err := oneArg(d, &v); err != nil {
		return err
	}
	return parseDuration(d, name, v, dst)
}

func parseDuration(d *caddyfile.Dispenser, name, v string, dst *caddy.Duration) error {
	dur, err := caddy.ParseDuration(v)
	if err != nil {
		return d.Errf("%s: %q is not a duration (such as 90s, 30m, 12h or 7d): %v", name, v, err)
	}
	*dst = caddy.Duration(dur)
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*PKCEAuth)(nil)
