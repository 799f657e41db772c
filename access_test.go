package pkceauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func TestWildcard(t *testing.T) {
	for _, tc := range []struct {
		pattern, value string
		want           bool
	}{
		{"admins", "admins", true},
		{"admins", "superadmins", false},
		{"admins", "admins2", false},
		{"admins", "Admins", false},
		{"", "", true},
		{"", "x", false},
		{"*", "", true},
		{"*", "anything", true},
		{"/staff/*", "/staff/it", true},
		{"/staff/*", "/staff/", true},
		{"/staff/*", "/staffing", false},
		{"/staff/*", "/other/staff/x", false},
		{"*-admin", "db-admin", true},
		{"*-admin", "db-admin-x", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "acb", false},
		{"a*b*c", "abcbc", true},
		{"a*bc", "abc", true},
		{"ab*bc", "abc", false}, // the parts must not overlap
		{"ab*bc", "abbc", true},
		{"a**b", "ab", true},
	} {
		if got := newWildcard(tc.pattern).match(tc.value); got != tc.want {
			t.Errorf("%q matches %q: %v, want %v", tc.pattern, tc.value, got, tc.want)
		}
	}
}

func TestEmailPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern, email string
		want           bool
	}{
		{"alice@example.com", "alice@example.com", true},
		{"Alice@Example.COM", "alice@example.com", true}, // compared lowercased
		{"alice@example.com", "bob@example.com", false},
		{"*@example.com", "bob@example.com", true},
		{"*@example.com", "bob@sub.example.com", false},
		{"*@example.com", "bob@evilexample.com", false},
		{"*@example.com", "bob@example.com.evil", false},
		{"*@example.com", "x@evil.com@example.com", false}, // a wildcard never matches @
		{"*@example.com", "@example.com", true},
		{"*@*.example.com", "bob@it.example.com", true},
		{"*@*.example.com", "bob@a.b.example.com", true},
		{"*@*.example.com", "bob@example.com", false},
		{"*@*.example.com", "bob@evil.com.example.net", false},
		{"a*@example.com", "alice@example.com", true},
		{"a*@example.com", "bob@example.com", false},
		{"*@example.com", "no-at-sign", false},
	} {
		local, domain, _ := strings.Cut(strings.ToLower(tc.pattern), "@")
		e := emailPattern{newWildcard(local), newWildcard(domain)}
		if got := e.match(tc.email); got != tc.want {
			t.Errorf("%q matches %q: %v, want %v", tc.pattern, tc.email, got, tc.want)
		}
	}
}

func TestRuleClaimValues(t *testing.T) {
	var claims map[string]any
	if err := json.Unmarshal([]byte(`{
		"realm_access": {"roles": ["admin", "user"]},
		"resource_access": {"app": {"roles": ["editor"]}, "other": {"roles": ["admin"]}},
		"urn:zitadel:iam:org:project:roles": {"manager": {"123": "org.example"}},
		"name": "Alice Example",
		"roles": "a,b",
		"level": 3,
		"active": true,
		"empty": [],
		"nothing": null,
		"department": ""
	}`), &claims); err != nil {
		t.Fatal(err)
	}
	got := ruleClaims(claims, []string{"realm_access.roles", "resource_access.app.roles", "name"},
		[]string{"urn:zitadel:iam:org:project:roles", "roles", "level", "active", "empty", "nothing", "department", "missing", "name"})
	want := map[string][]string{
		"realm_access.roles":                {"admin", "user"},
		"resource_access.app.roles":         {"editor"},
		"urn:zitadel:iam:org:project:roles": {"manager"},
		"name":                              {"Alice Example"}, // strings are not split
		"roles":                             {"a,b"},
		"level":                             {"3"},
		"active":                            {"true"},
		"empty":                             {},
		"nothing":                           {},
		"department":                        {},
		"missing":                           {}, // looked for, not found: present and empty
	}
	if len(got) != len(want) {
		t.Errorf("got %d paths %v, want %d", len(got), got, len(want))
	}
	for path, w := range want {
		g, ok := got[path]
		if !ok || strings.Join(g, "|") != strings.Join(w, "|") {
			t.Errorf("%s: %q (present %v), want %q", path, g, ok, w)
		}
	}
	// The session keeps "looked for, not found" through JSON.
	b, _ := json.Marshal(session{RuleClaims: got})
	var back session
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if _, ok := back.RuleClaims["missing"]; !ok {
		t.Errorf("a missing claim's path did not survive JSON: %s", b)
	}
	if ruleClaims(claims) != nil || ruleClaims(claims, nil, nil) != nil {
		t.Error("no paths should give no map (nothing in the cookie)")
	}
}

// ruleUser is the session of a test user for the decision tables.
func ruleUser(mod func(*session)) *activeSession {
	s := &session{
		UserID:        "alice-sub",
		Email:         "Alice@Corp.example.com",
		EmailVerified: true,
		Groups:        []string{"staff", "/eng/backend"},
		RuleClaims: map[string][]string{
			"realm_access.roles":        {"offline_access", "admin"},
			"resource_access.app.roles": {"editor"},
			"hd":                        {"corp.example.com"},
			"sub":                       {"123456"},
			"department":                {},
		},
		ACR: "silver",
	}
	if mod != nil {
		mod(s)
	}
	return (&PKCEAuth{}).activate(s)
}

func TestDecide(t *testing.T) {
	claims := func(kv ...string) map[string][]string {
		m := map[string][]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = append(m[kv[i]], kv[i+1])
		}
		return m
	}
	unverified := func(s *session) { s.EmailVerified = false }
	for _, tc := range []struct {
		name       string
		allow      []Rule
		deny       []Rule
		unverified bool // allow_unverified_email
		acr        []string
		user       func(*session)
		want       string // "" allowed, else the denial reason; "stale"; "acr"
	}{
		{"no rules", nil, nil, false, nil, nil, ""},
		{"exact email", []Rule{{Email: []string{"alice@corp.example.com"}}}, nil, false, nil, nil, ""},
		{"email is case-insensitive", []Rule{{Email: []string{"ALICE@corp.EXAMPLE.com"}}}, nil, false, nil, nil, ""},
		{"other email", []Rule{{Email: []string{"bob@corp.example.com"}}}, nil, false, nil, nil, "no allow rule matched"},
		{"email domain", []Rule{{Email: []string{"*@corp.example.com"}}}, nil, false, nil, nil, ""},
		{"email parent domain only", []Rule{{Email: []string{"*@example.com"}}}, nil, false, nil, nil, "no allow rule matched"},
		{"email subdomains", []Rule{{Email: []string{"*@*.example.com"}}}, nil, false, nil, nil, ""},
		{"email values are OR", []Rule{{Email: []string{"bob@x.example", "*@corp.example.com"}}}, nil, false, nil, nil, ""},
		{"unverified email refused", []Rule{{Email: []string{"*@corp.example.com"}}}, nil, false, nil, unverified, "no allow rule matched"},
		{"unverified email with allow_unverified_email", []Rule{{Email: []string{"*@corp.example.com"}}}, nil, true, nil, unverified, ""},
		{"no email", []Rule{{Email: []string{"*@*"}}}, nil, false, nil, func(s *session) { s.Email = "" }, "no allow rule matched"},
		{"deny matches an unverified email", nil, []Rule{{Email: []string{"alice@corp.example.com"}}}, false, nil, unverified, "deny[0] matched"},
		{"group", []Rule{{Groups: []string{"staff"}}}, nil, false, nil, nil, ""},
		{"group is exact", []Rule{{Groups: []string{"staf"}}}, nil, false, nil, nil, "no allow rule matched"},
		{"group wildcard", []Rule{{Groups: []string{"/eng/*"}}}, nil, false, nil, nil, ""},
		{"group values are OR", []Rule{{Groups: []string{"admins", "staff"}}}, nil, false, nil, nil, ""},
		{"no groups", []Rule{{Groups: []string{"*"}}}, nil, false, nil, func(s *session) { s.Groups = nil }, "no allow rule matched"},
		{"keycloak realm role", []Rule{{Claims: claims("realm_access.roles", "admin")}}, nil, false, nil, nil, ""},
		{"keycloak client role", []Rule{{Claims: claims("resource_access.app.roles", "editor")}}, nil, false, nil, nil, ""},
		{"client role missing", []Rule{{Claims: claims("resource_access.app.roles", "admin")}}, nil, false, nil, nil, "no allow rule matched"},
		{"claim wildcard", []Rule{{Claims: claims("hd", "*.example.com")}}, nil, false, nil, nil, ""},
		{"empty claim", []Rule{{Claims: claims("department", "*")}}, nil, false, nil, nil, "no allow rule matched"},
		{"regex", []Rule{{ClaimsRegex: claims("sub", "[0-9]+")}}, nil, false, nil, nil, ""},
		{"regex is anchored", []Rule{{ClaimsRegex: claims("realm_access.roles", "adm")}}, nil, false, nil, nil, "no allow rule matched"},
		{"regex alternatives", []Rule{{ClaimsRegex: claims("hd", "x", "hd", "corp\\..*")}}, nil, false, nil, nil, ""},
		{"conditions are AND", []Rule{{Groups: []string{"staff"}, Claims: claims("realm_access.roles", "root")}}, nil, false, nil, nil, "no allow rule matched"},
		{"all conditions hold", []Rule{{
			Email: []string{"*@corp.example.com"}, Groups: []string{"staff"},
			Claims: claims("realm_access.roles", "admin"), ClaimsRegex: claims("sub", "1.*"),
		}}, nil, false, nil, nil, ""},
		{"claim and regex on one path are AND", []Rule{{Claims: claims("hd", "corp.example.com"), ClaimsRegex: claims("hd", "other.*")}}, nil, false, nil, nil, "no allow rule matched"},
		{"allow rules are OR", []Rule{{Groups: []string{"admins"}}, {Claims: claims("hd", "corp.example.com")}}, nil, false, nil, nil, ""},
		{"deny wins", []Rule{{Groups: []string{"staff"}}}, []Rule{{Claims: claims("realm_access.roles", "admin")}}, false, nil, nil, "deny[0] matched"},
		{"second deny", nil, []Rule{{Groups: []string{"x"}}, {Email: []string{"*@corp.example.com"}}}, false, nil, nil, "deny[1] matched"},
		{"deny not matching, no allow", nil, []Rule{{Groups: []string{"contractors"}}}, false, nil, nil, ""},
		{"deny conditions are AND", nil, []Rule{{Groups: []string{"staff"}, Email: []string{"bob@*"}}}, false, nil, nil, ""},
		{"session lacks a rule claim", []Rule{{Claims: claims("groups_extra", "x")}}, nil, false, nil, nil, "stale"},
		{"deny on a claim the session lacks", nil, []Rule{{ClaimsRegex: claims("blocked", ".*")}}, false, nil, nil, "stale"},
		{"acr met", nil, nil, false, []string{"gold", "silver"}, nil, ""},
		{"acr not met", nil, nil, false, []string{"gold"}, nil, "acr"},
		{"no acr", nil, nil, false, []string{"gold"}, func(s *session) { s.ACR = "" }, "acr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &PKCEAuth{Allow: tc.allow, Deny: tc.deny, AllowUnverifiedEmail: tc.unverified, RequireACR: tc.acr, ClockSkew: caddy.Duration(time.Minute)}
			ap, err := p.compileAccess()
			if err != nil {
				t.Fatal(err)
			}
			if ap == nil {
				if tc.want != "" {
					t.Fatalf("no policy compiled, want %q", tc.want)
				}
				return
			}
			res := ap.decide(ruleUser(tc.user))
			got := res.denied
			switch {
			case res.stale:
				got = "stale"
			case got == "" && res.acrLow:
				got = "acr"
			}
			if got != tc.want {
				t.Errorf("decision %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCompileAccessErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		p       PKCEAuth
		wantErr string
	}{
		{"empty rule", PKCEAuth{Allow: []Rule{{Groups: []string{"a"}}, {}}}, "allow[1]: a rule needs at least one condition"},
		{"bad email", PKCEAuth{Deny: []Rule{{Email: []string{"example.com"}}}}, `deny[0]: email "example.com" is neither an address nor a pattern`},
		{"email with two @", PKCEAuth{Allow: []Rule{{Email: []string{"a@b@c"}}}}, `email "a@b@c" is neither`},
		{"email without domain", PKCEAuth{Allow: []Rule{{Email: []string{"alice@"}}}}, `email "alice@" is neither`},
		{"empty group", PKCEAuth{Allow: []Rule{{Groups: []string{""}}}}, "allow[0]: groups has an empty value"},
		{"claim without values", PKCEAuth{Allow: []Rule{{Claims: map[string][]string{"hd": {}}}}}, `allow[0]: claims "hd" has no values`},
		{"claim with an empty value", PKCEAuth{Allow: []Rule{{Claims: map[string][]string{"hd": {""}}}}}, `claims "hd" has an empty value`},
		{"empty claim path", PKCEAuth{Allow: []Rule{{Claims: map[string][]string{"": {"x"}}}}}, "claims has an empty claim path"},
		{"bad regex", PKCEAuth{Deny: []Rule{{ClaimsRegex: map[string][]string{"sub": {"ok", "(unclosed"}}}}}, `deny[0]: claims_regex "sub": "(unclosed" is not a valid regular expression`},
		{"regex without values", PKCEAuth{Allow: []Rule{{ClaimsRegex: map[string][]string{"sub": nil}}}}, `claims_regex "sub" has no expressions`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.p.compileAccess()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
			if err := tc.p.validateAccess(); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Validate: %v, want the same error", err)
			}
		})
	}
}

func TestValidateAccess(t *testing.T) {
	staff := []Rule{{Groups: []string{"staff"}}}
	for _, tc := range []struct {
		name    string
		p       PKCEAuth
		wantErr string // "" valid
	}{
		{"nothing", PKCEAuth{}, ""},
		{"rules and step-up", PKCEAuth{Allow: staff, RequireACR: []string{"urn:mace:incommon:iap:silver"}, MaxAge: caddy.Duration(time.Minute)}, ""},
		{"pass_unauthenticated alone", PKCEAuth{PassUnauthenticated: true}, ""},
		{"pass_unauthenticated with allow", PKCEAuth{PassUnauthenticated: true, Allow: staff}, "pass_unauthenticated lets requests without a session through"},
		{"pass_unauthenticated with deny", PKCEAuth{PassUnauthenticated: true, Deny: staff}, "pass_unauthenticated"},
		{"pass_unauthenticated with require_acr", PKCEAuth{PassUnauthenticated: true, RequireACR: []string{"gold"}}, "pass_unauthenticated"},
		{"pass_unauthenticated with max_age", PKCEAuth{PassUnauthenticated: true, MaxAge: caddy.Duration(time.Hour)}, "pass_unauthenticated"},
		{"acr with a space", PKCEAuth{RequireACR: []string{"gold silver"}}, `require_acr: "gold silver" is not a valid acr value`},
		{"acr with a quote", PKCEAuth{RequireACR: []string{`a"b`}}, "require_acr"},
		{"empty acr", PKCEAuth{RequireACR: []string{""}}, "require_acr"},
		{"negative max_age", PKCEAuth{MaxAge: -1}, "max_age must not be negative"},
		{"max_age below a second", PKCEAuth{MaxAge: caddy.Duration(time.Millisecond)}, "max_age must be at least 1s"},
		{"acr_values twice", PKCEAuth{RequireACR: []string{"gold"}, AuthParams: map[string]string{"acr_values": "gold"}}, "acr_values is sent from require_acr"},
		{"max_age twice", PKCEAuth{MaxAge: caddy.Duration(time.Minute), AuthParams: map[string]string{"max_age": "60"}}, "max_age is sent from max_age"},
		{"acr_values as auth_param alone", PKCEAuth{AuthParams: map[string]string{"acr_values": "gold"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.validateAccess()
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestStepUpChallenge(t *testing.T) {
	for _, tc := range []struct {
		acr    []string
		maxAge int64
		want   string
	}{
		{[]string{"gold"}, 0, `, acr_values="gold"`},
		{[]string{"gold", "silver"}, 300, `, acr_values="gold silver", max_age="300"`},
		{nil, 60, `, max_age="60"`},
	} {
		want := `Bearer error="insufficient_user_authentication", error_description="A stronger or more recent sign-in is required"` + tc.want
		if got := stepUpChallenge(tc.acr, tc.maxAge); got != want {
			t.Errorf("challenge %s, want %s", got, want)
		}
	}
}

// TestDecisionIsAllocationFree: the decision is made on every request (a
// named provider's session serves routes with other rules) and must not
// allocate.
func TestDecisionIsAllocationFree(t *testing.T) {
	p := &PKCEAuth{
		Allow: []Rule{{Email: []string{"*@corp.example.com"}, Groups: []string{"/eng/*"}}, {ClaimsRegex: map[string][]string{"sub": {"[0-9]+"}}}},
		Deny:  []Rule{{Claims: map[string][]string{"realm_access.roles": {"blocked"}}}},
	}
	ap, err := p.compileAccess()
	if err != nil {
		t.Fatal(err)
	}
	s := ruleUser(func(s *session) { s.Email = "alice@corp.example.com" })
	if n := testing.AllocsPerRun(100, func() { _ = ap.decide(s) }); n != 0 {
		t.Errorf("decide allocates %v times, want 0", n)
	}
}

// TestEnforceAccessIsAllocationFree: a session the rules allow, within
// max_age, passes enforceAccess without allocating.
func TestEnforceAccessIsAllocationFree(t *testing.T) {
	p := &PKCEAuth{
		Allow:      []Rule{{Groups: []string{"staff"}}},
		RequireACR: []string{"silver"},
		MaxAge:     caddy.Duration(time.Hour),
		ClockSkew:  caddy.Duration(time.Minute),
	}
	var err error
	if p.access, err = p.compileAccess(); err != nil {
		t.Fatal(err)
	}
	a := ruleUser(func(s *session) { s.AuthTime = now().Unix() })
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	w := httptest.NewRecorder()
	if handled, _ := p.enforceAccess(w, r, p, nil, a); handled {
		t.Fatal("an allowed session was stopped")
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = p.enforceAccess(w, r, p, nil, a) }); n != 0 {
		t.Errorf("enforceAccess allocates %v times per request, want 0", n)
	}
}

// TestAccessConfigHardening: rule forms that would not do what they say
// are refused: an allow rule on the raw email claim (it would skip the
// email_verified requirement of the email condition), and a regular
// expression that escapes its anchoring.
func TestAccessConfigHardening(t *testing.T) {
	for name, rule := range map[string]Rule{
		"claims on email":       {Claims: map[string][]string{"email": {"*@example.com"}}},
		"claims_regex on email": {ClaimsRegex: map[string][]string{"email": {".*@example\\.com"}}},
		"regex escaping anchor": {ClaimsRegex: map[string][]string{"role": {"admin)|(.*"}}},
	} {
		p := &PKCEAuth{Allow: []Rule{rule}}
		if err := p.validateAccess(); err == nil {
			t.Errorf("%s: allow rule accepted", name)
		}
	}
	// Deny rules may match the raw email: refusing is the safe side.
	p := &PKCEAuth{Deny: []Rule{{Claims: map[string][]string{"email": {"*@example.com"}}}}}
	if err := p.validateAccess(); err != nil {
		t.Errorf("deny rule on the email claim refused: %v", err)
	}
}
