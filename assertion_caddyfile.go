package pkceauth

import "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

// unmarshalAssertion parses the assertion block:
//
//	assertion {
//	    header    <field>
//	    audience  <aud>
//	    claims    <claim...>
//	    lifetime  <duration>
//	    issuer    <iss>
//	    key_files <pem-file...>
//	    jwks_path <path>|off
//	}
//
// Each subdirective sets the field of the same name and may be given once.
func unmarshalAssertion(d *caddyfile.Dispenser) (*AssertionConfig, error) {
	if d.NextArg() {
		return nil, d.Errf("assertion takes no arguments, found %q; put the settings in its block", d.Val())
	}
	cfg := new(AssertionConfig)
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] {
			return nil, d.Errf("assertion: %s may be given only once", name)
		}
		seen[name] = true
		var err error
		switch name {
		case "header":
			err = oneArg(d, &cfg.Header)
		case "audience":
			err = oneArg(d, &cfg.Audience)
		case "claims":
			err = someArgs(d, &cfg.Claims)
		case "lifetime":
			err = durationArg(d, name, &cfg.Lifetime)
		case "issuer":
			err = oneArg(d, &cfg.Issuer)
		case "key_files":
			err = someArgs(d, &cfg.KeyFiles)
		case "jwks_path":
			cfg.JWKSPath = new(string)
			err = oneArg(d, cfg.JWKSPath)
		default:
			return nil, d.Errf("unrecognized assertion subdirective %s", name)
		}
		if err != nil {
			return nil, err
		}
	}
	if !seen["audience"] {
		return nil, d.Err("assertion: audience is required (the upstream's identifier, such as https://app.internal)")
	}
	return cfg, nil
}
