package pkceauth

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// unmarshalRule parses one allow or deny rule: a condition on the
// directive's line, or a block of conditions that must all hold:
//
//	allow email *@example.com
//	allow {
//	    email       <address|pattern...>
//	    group       <group...>
//	    claim       <dotted.path> <value...>
//	    claim_regex <dotted.path> <regexp...>
//	}
//
// `group` fills groups, `claim` claims and `claim_regex` claims_regex. In
// a block, email and group may be given once and claim and claim_regex
// once per path, so that the rule maps 1:1 onto its JSON.
func unmarshalRule(d *caddyfile.Dispenser, kind string) (Rule, error) {
	var r Rule
	if args := d.RemainingArgs(); len(args) > 0 {
		if err := addCondition(d, &r, kind, args[0], args[1:]); err != nil {
			return r, err
		}
		if d.NextBlock(d.Nesting()) {
			return r, d.Errf("%s takes one condition on its line or a block of conditions, not both", kind)
		}
		return r, nil
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if err := addCondition(d, &r, kind, name, d.RemainingArgs()); err != nil {
			return r, err
		}
		if d.NextBlock(d.Nesting()) {
			return r, d.Errf("%s: %s does not take a block", kind, name)
		}
	}
	if len(r.Email) == 0 && len(r.Groups) == 0 && len(r.Claims) == 0 && len(r.ClaimsRegex) == 0 {
		return r, d.Errf("%s needs a condition: email, group, claim or claim_regex, on its line or in its block", kind)
	}
	return r, nil
}

// addCondition adds the condition name with its arguments to r.
func addCondition(d *caddyfile.Dispenser, r *Rule, kind, name string, args []string) error {
	switch name {
	case "email", "group":
		if len(args) == 0 {
			return d.Errf("%s %s needs at least one value", kind, name)
		}
		dst := &r.Email
		if name == "group" {
			dst = &r.Groups
		}
		if *dst != nil {
			return d.Errf("%s: %s may be given only once per rule; list the alternatives on one line", kind, name)
		}
		*dst = args
	case "claim", "claim_regex":
		if len(args) < 2 {
			return d.Errf("%s %s needs a claim path and at least one value", kind, name)
		}
		dst := &r.Claims
		if name == "claim_regex" {
			dst = &r.ClaimsRegex
		}
		if _, dup := (*dst)[args[0]]; dup {
			return d.Errf("%s: %s %s may be given only once per rule; list the alternatives on one line", kind, name, args[0])
		}
		if *dst == nil {
			*dst = make(map[string][]string)
		}
		(*dst)[args[0]] = args[1:]
	default:
		return d.Errf("unrecognized %s condition %s (email, group, claim or claim_regex)", kind, name)
	}
	return nil
}
