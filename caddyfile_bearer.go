package pkceauth

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// unmarshalBearer parses the bearer block:
//
//	bearer {
//	    audiences       <aud...>
//	    required_scopes <scope...>
//	    require_at_jwt
//	    only
//	    max_token_size  <bytes>
//	    cache_size      <n>
//	    resource_metadata [{
//	        resource         <https-url>
//	        scopes_supported <scope...>
//	    }]
//	}
//
// Each subdirective sets the JSON field of the same name and may be given
// once; `resource_metadata` alone publishes the metadata with its defaults.
func unmarshalBearer(d *caddyfile.Dispenser) (*BearerConfig, error) {
	if d.NextArg() {
		return nil, d.Errf("bearer takes no arguments, found %q; put the settings in its block", d.Val())
	}
	cfg := new(BearerConfig)
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] {
			return nil, d.Errf("bearer: %s may be given only once", name)
		}
		seen[name] = true
		var err error
		switch name {
		case "audiences":
			err = someArgs(d, &cfg.Audiences)
		case "required_scopes":
			err = someArgs(d, &cfg.RequiredScopes)
		case "require_at_jwt":
			err = setFlag(d, &cfg.RequireATJWT)
		case "only":
			err = setFlag(d, &cfg.Only)
		case "max_token_size":
			err = intArg(d, name, &cfg.MaxTokenSize)
		case "cache_size":
			err = intArg(d, name, &cfg.CacheSize)
		case "resource_metadata":
			cfg.ResourceMetadata, err = unmarshalResourceMetadata(d)
		default:
			return nil, d.Errf("unrecognized bearer subdirective %s", name)
		}
		if err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// unmarshalResourceMetadata parses `resource_metadata [{ ... }]`.
func unmarshalResourceMetadata(d *caddyfile.Dispenser) (*ResourceMetadata, error) {
	if d.NextArg() {
		return nil, d.Errf("resource_metadata takes no arguments, found %q; put resource and scopes_supported in its block", d.Val())
	}
	m := new(ResourceMetadata)
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] {
			return nil, d.Errf("resource_metadata: %s may be given only once", name)
		}
		seen[name] = true
		var err error
		switch name {
		case "resource":
			err = oneArg(d, &m.Resource)
		case "scopes_supported":
			err = someArgs(d, &m.ScopesSupported)
		default:
			return nil, d.Errf("unrecognized resource_metadata subdirective %s", name)
		}
		if err != nil {
			return nil, err
		}
	}
	return m, nil
}

// appendMatcherSet parses the matchers after api_match or
// navigation_match (inline, `api_match path /api/*`, or in a block) as one
// matcher set and adds it to sets.
func appendMatcherSet(d *caddyfile.Dispenser, sets *caddyhttp.RawMatcherSets) error {
	name := d.Val()
	set, err := caddyhttp.ParseCaddyfileNestedMatcherSet(d)
	if err != nil {
		return err
	}
	if len(set) == 0 {
		return d.Errf("%s needs at least one matcher, such as `%s path /api/*`", name, name)
	}
	*sets = append(*sets, set)
	return nil
}
