package pkceauth

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Rule is one allow or deny rule. It matches a user when every condition it
// has matches (AND); a condition matches when any of its values matches
// any of the user's values (OR). A rule needs at least one condition.
//
// Values are exact or contain `*` wildcards (any run of characters).
type Rule struct {
	// Email addresses, compared without regard to case: exact, or with
	// wildcards such as `*@example.com` (any address at exactly that
	// domain) or `*@*.example.com` (its subdomains); a wildcard never
	// matches `@`. In allow rules only a verified email matches
	// (`email_verified` true, see allow_unverified_email); deny rules
	// match any email. Default: none.
	Email []string `json:"email,omitempty"`

	// Groups or roles, from the claim named by groups_claim, such as
	// `admins` or `/staff/*` (Keycloak group paths). Default: none.
	Groups []string `json:"groups,omitempty"`

	// Any claim by dotted path (`realm_access.roles`,
	// `resource_access.<client>.roles`, `hd`, `department`) to the values
	// it may have. An array claim matches when one element does, an
	// object claim (Zitadel roles) by its keys, a string claim as a whole.
	// Default: none.
	Claims map[string][]string `json:"claims,omitempty"`

	// Like claims, with RE2 regular expressions that must match a whole
	// value (they are anchored: `adm.*` does not match `superadmin`).
	// Default: none.
	ClaimsRegex map[string][]string `json:"claims_regex,omitempty"`
}

// accessPolicy is the compiled allow/deny rules and step-up requirements
// of one handler.
type accessPolicy struct {
	allow, deny   []compiledRule
	claimPaths    []string // the claims the rules read, sorted
	allowUnverify bool
	acr           []string
	maxAge        int64  // seconds, 0 = no limit
	challenge     string // the RFC 9470 WWW-Authenticate value for step-up
}

type compiledRule struct {
	email  []emailPattern
	groups []wildcard
	claims []claimCondition
}

// claimCondition is one claim path with its accepted values.
type claimCondition struct {
	path    string
	values  []wildcard
	regexes []*regexp.Regexp
}

// wildcard is a value with `*` wildcards, split at them: a value without
// any is one part and compares exactly.
type wildcard []string

func newWildcard(pattern string) wildcard { return strings.Split(pattern, "*") }

// match reports whether s matches the pattern. Matching the middle parts
// leftmost is enough: a later match can only leave less room for the
// parts after it.
func (w wildcard) match(s string) bool {
	if len(w) == 1 {
		return s == w[0]
	}
	if !strings.HasPrefix(s, w[0]) {
		return false
	}
	s = s[len(w[0]):]
	last := w[len(w)-1]
	for _, part := range w[1 : len(w)-1] {
		i := strings.Index(s, part)
		if i < 0 {
			return false
		}
		s = s[i+len(part):]
	}
	return strings.HasSuffix(s, last)
}

// emailPattern matches one lowercased address: local part and domain
// separately, so that a wildcard cannot match the `@`.
type emailPattern struct{ local, domain wildcard }

func (e emailPattern) match(email string) bool {
	at := strings.IndexByte(email, '@')
	if at < 0 || strings.IndexByte(email[at+1:], '@') >= 0 {
		return false
	}
	return e.local.match(email[:at]) && e.domain.match(email[at+1:])
}

// compileAccess builds the policy, or nil when nothing is configured.
// Errors name the field, e.g. `allow[1]: claims_regex "sub": ...`.
func (p *PKCEAuth) compileAccess() (*accessPolicy, error) {
	if len(p.Allow) == 0 && len(p.Deny) == 0 && len(p.RequireACR) == 0 && p.MaxAge <= 0 {
		return nil, nil
	}
	ap := &accessPolicy{
		allowUnverify: p.AllowUnverifiedEmail,
		acr:           p.RequireACR,
		maxAge:        int64(time.Duration(p.MaxAge) / time.Second),
	}
	paths := map[string]bool{}
	for _, set := range []struct {
		name  string
		rules []Rule
		out   *[]compiledRule
	}{{"allow", p.Allow, &ap.allow}, {"deny", p.Deny, &ap.deny}} {
		for i, r := range set.rules {
			if set.name == "allow" && (r.Claims["email"] != nil || r.ClaimsRegex["email"] != nil) {
				// The email condition requires email_verified; a claim
				// condition on the raw email would let an unverified,
				// self-registered address in.
				return nil, fmt.Errorf("allow[%d]: match the email with the email condition (`allow email ...`), which requires email_verified, not with claims or claims_regex", i)
			}
			cr, err := compileRule(r)
			if err != nil {
				return nil, fmt.Errorf("%s[%d]: %v", set.name, i, err)
			}
			for _, c := range cr.claims {
				paths[c.path] = true
			}
			*set.out = append(*set.out, cr)
		}
	}
	for path := range paths {
		ap.claimPaths = append(ap.claimPaths, path)
	}
	slices.Sort(ap.claimPaths)
	ap.challenge = stepUpChallenge(ap.acr, ap.maxAge)
	return ap, nil
}

func compileRule(r Rule) (compiledRule, error) {
	var cr compiledRule
	if len(r.Email) == 0 && len(r.Groups) == 0 && len(r.Claims) == 0 && len(r.ClaimsRegex) == 0 {
		return cr, errors.New("a rule needs at least one condition: email, groups, claims or claims_regex")
	}
	for _, e := range r.Email {
		local, domain, ok := strings.Cut(strings.ToLower(e), "@")
		if !ok || local == "" || domain == "" || strings.Contains(domain, "@") {
			return cr, fmt.Errorf("email %q is neither an address nor a pattern such as *@example.com", e)
		}
		cr.email = append(cr.email, emailPattern{newWildcard(local), newWildcard(domain)})
	}
	for _, g := range r.Groups {
		if g == "" {
			return cr, errors.New("groups has an empty value")
		}
		cr.groups = append(cr.groups, newWildcard(g))
	}
	for _, path := range slices.Sorted(maps.Keys(r.Claims)) {
		if path == "" {
			return cr, errors.New("claims has an empty claim path")
		}
		if len(r.Claims[path]) == 0 {
			return cr, fmt.Errorf("claims %q has no values", path)
		}
		c := claimCondition{path: path}
		for _, v := range r.Claims[path] {
			if v == "" {
				return cr, fmt.Errorf("claims %q has an empty value", path)
			}
			c.values = append(c.values, newWildcard(v))
		}
		cr.claims = append(cr.claims, c)
	}
	for _, path := range slices.Sorted(maps.Keys(r.ClaimsRegex)) {
		if path == "" {
			return cr, errors.New("claims_regex has an empty claim path")
		}
		if len(r.ClaimsRegex[path]) == 0 {
			return cr, fmt.Errorf("claims_regex %q has no expressions", path)
		}
		c := claimCondition{path: path}
		for _, expr := range r.ClaimsRegex[path] {
			// Compiled alone first: an expression such as `a)|(.*` would
			// otherwise close the anchoring group and match anything.
			if _, err := regexp.Compile(expr); err != nil {
				return cr, fmt.Errorf("claims_regex %q: %q is not a valid regular expression: %v", path, expr, err)
			}
			re, err := regexp.Compile(`^(?:` + expr + `)$`)
			if err != nil {
				return cr, fmt.Errorf("claims_regex %q: %q is not a valid regular expression: %v", path, expr, err)
			}
			c.regexes = append(c.regexes, re)
		}
		cr.claims = append(cr.claims, c)
	}
	return cr, nil
}

// validateAccess checks what compileAccess does not: the step-up values
// and how the access settings combine with the rest of the config.
func (p *PKCEAuth) validateAccess() error {
	if _, err := p.compileAccess(); err != nil {
		return err
	}
	for _, v := range p.RequireACR {
		if v == "" || strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == '"' || r == '\\' || r == 0x7f }) {
			return fmt.Errorf("require_acr: %q is not a valid acr value (no spaces, quotes, backslashes or control characters)", v)
		}
	}
	if p.MaxAge < 0 {
		return errors.New("max_age must not be negative")
	}
	if p.MaxAge > 0 && p.MaxAge < caddy.Duration(time.Second) {
		return errors.New("max_age must be at least 1s")
	}
	if _, set := p.AuthParams["acr_values"]; set && len(p.RequireACR) > 0 {
		return errors.New("auth_params: acr_values is sent from require_acr; remove one of them")
	}
	if _, set := p.AuthParams["max_age"]; set && p.MaxAge > 0 {
		return errors.New("auth_params: max_age is sent from max_age; remove one of them")
	}
	if p.PassUnauthenticated && (len(p.Allow) > 0 || len(p.Deny) > 0 || len(p.RequireACR) > 0 || p.MaxAge > 0) {
		return errors.New("pass_unauthenticated lets requests without a session through, so allow, deny, require_acr and max_age would protect nothing there; put them on another route")
	}
	return nil
}

// accessResult is the policy's decision for one session: the rules and
// the acr. max_age depends on the clock and is checked by the caller.
type accessResult struct {
	denied string // why the rules refuse the session, for the log; "" when they allow it
	stale  bool   // the session lacks claims the rules read: sign in again
	acrLow bool   // the login's acr is not one the handler requires
}

// decide applies the rules to s. Deny rules win over allow rules; with
// allow rules, a user matching none is denied.
func (ap *accessPolicy) decide(s *activeSession) accessResult {
	var res accessResult
	for _, path := range ap.claimPaths {
		if _, ok := s.RuleClaims[path]; !ok {
			res.stale = true
			return res
		}
	}
	email := s.email
	for i, r := range ap.deny {
		if r.match(s, email, true) {
			res.denied = "deny[" + strconv.Itoa(i) + "] matched"
			break
		}
	}
	if res.denied == "" && len(ap.allow) > 0 {
		res.denied = "no allow rule matched"
		for _, r := range ap.allow {
			if r.match(s, email, ap.allowUnverify || s.EmailVerified) {
				res.denied = ""
				break
			}
		}
	}
	res.acrLow = len(ap.acr) > 0 && !slices.Contains(ap.acr, s.ACR)
	return res
}

// match reports whether every condition of the rule holds. emailUsable
// says whether s's email may be matched at all (verified, or in a deny
// rule, where matching an unverified address is the safe side).
func (r *compiledRule) match(s *activeSession, email string, emailUsable bool) bool {
	if len(r.email) > 0 {
		if !emailUsable || email == "" || !slices.ContainsFunc(r.email, func(e emailPattern) bool { return e.match(email) }) {
			return false
		}
	}
	if len(r.groups) > 0 && !anyMatch(r.groups, s.Groups) {
		return false
	}
	for i := range r.claims {
		if !r.claims[i].match(s.RuleClaims[r.claims[i].path]) {
			return false
		}
	}
	return true
}

func (c *claimCondition) match(have []string) bool {
	if len(c.values) > 0 {
		return anyMatch(c.values, have)
	}
	for _, v := range have {
		for _, re := range c.regexes {
			if re.MatchString(v) {
				return true
			}
		}
	}
	return false
}

func anyMatch(patterns []wildcard, have []string) bool {
	for _, v := range have {
		for _, w := range patterns {
			if w.match(v) {
				return true
			}
		}
	}
	return false
}

// ruleClaims returns the claims at paths as lists, for the session: every
// path is present, with no values when the claim is missing, so that a
// handler can tell "not there" from "not looked for".
func ruleClaims(claims map[string]any, paths ...[]string) map[string][]string {
	var out map[string][]string
	for _, list := range paths {
		for _, path := range list {
			if _, done := out[path]; done {
				continue
			}
			if out == nil {
				out = make(map[string][]string)
			}
			v, _ := lookupClaim(claims, path)
			out[path] = ruleClaimValues(v)
		}
	}
	return out
}

// ruleClaimValues turns a claim into the values rules compare: array
// elements, object keys (Zitadel roles), or the claim itself. Unlike
// groups, strings are not split: a rule on `name` compares the whole name.
func ruleClaimValues(v any) []string {
	switch t := v.(type) {
	case nil:
		return []string{}
	case []any, map[string]any:
		return claimStrings(t)
	default:
		if s := claimString(t); s != "" {
			return []string{s}
		}
		return []string{}
	}
}
