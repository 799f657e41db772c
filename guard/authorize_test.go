package pkceguard

import (
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func authzGuard() *Guard {
	g := defaultGuard()
	g.ExemptClients = []string{exemptApp}
	g.RedirectURIs = map[string][]string{publicApp: {publicAppCB}}
	return g
}

func TestCheckAuthorization(t *testing.T) {
	s256 := authParams(publicApp, publicAppCB, "st", rfcChallenge, "S256")
	with := func(base url.Values, kv ...string) url.Values {
		q := cloneValues(base)
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "<del>" {
				q.Del(kv[i])
			} else {
				q.Set(kv[i], kv[i+1])
			}
		}
		return q
	}
	added := func(base url.Values, k, v string) url.Values { q := cloneValues(base); q.Add(k, v); return q }
	for _, tc := range []struct {
		name     string
		params   url.Values
		want     verdict
		reason   string
		redirect bool
	}{
		{"S256", s256, bind, "", false},
		{"hybrid response_type", with(s256, "response_type", "code id_token"), bind, "", false},
		{"response_type in upper case still guarded", with(s256, "response_type", "CODE", "code_challenge", "<del>", "code_challenge_method", "<del>"), refuse, reasonMissingChallenge, true},
		{"implicit flow passes", with(s256, "response_type", "token", "code_challenge", "<del>"), pass, "", false},
		{"no challenge", with(s256, "code_challenge", "<del>", "code_challenge_method", "<del>"), refuse, reasonMissingChallenge, true},
		{"method without challenge", with(s256, "code_challenge", "<del>"), refuse, reasonMissingChallenge, true},
		{"no method means plain", with(s256, "code_challenge_method", "<del>"), refuse, reasonMethodNotAllowed, true},
		{"plain", with(s256, "code_challenge_method", "plain", "code_challenge", rfcVerifier), refuse, reasonMethodNotAllowed, true},
		{"s256 in lower case", with(s256, "code_challenge_method", "s256"), refuse, reasonMethodNotAllowed, true},
		{"short challenge", with(s256, "code_challenge", rfcChallenge[:42]), refuse, reasonMalformedChallenge, true},
		{"exempt client without challenge", with(s256, "client_id", exemptApp, "code_challenge", "<del>", "code_challenge_method", "<del>"), pass, "", false},
		{"exempt client with a bad challenge", with(s256, "client_id", exemptApp, "code_challenge", "x"), refuse, reasonMalformedChallenge, true},
		{"exempt client with a good challenge", with(s256, "client_id", exemptApp), bind, "", false},
		{"no client_id", with(s256, "client_id", "<del>"), refuse, reasonBadRequest, false},
		{"no redirect_uri, one configured", with(s256, "redirect_uri", "<del>"), bind, "", false},
		{"no redirect_uri, none configured", with(s256, "client_id", otherApp, "redirect_uri", "<del>"), refuse, reasonBadRequest, false},
		{"relative redirect_uri", with(s256, "redirect_uri", "/cb"), refuse, reasonBadRequest, false},
		{"redirect_uri with fragment", with(s256, "redirect_uri", publicAppCB+"#x"), refuse, reasonBadRequest, false},
		{"repeated code_challenge", added(s256, "code_challenge", rfcChallenge), refuse, reasonBadRequest, false},
		{"repeated redirect_uri", added(s256, "redirect_uri", "https://evil.example/"), refuse, reasonBadRequest, false},
		{"repeated client_id", added(s256, "client_id", otherApp), refuse, reasonBadRequest, false},
		{"repeated response_type", added(s256, "response_type", "token"), refuse, reasonBadRequest, false},
		{"request object", with(s256, "request", "eyJ.x.y"), refuse, reasonBadRequest, true},
		{"pushed request", with(s256, "request_uri", "urn:ietf:params:oauth:request_uri:x"), refuse, reasonBadRequest, true},
		{"form_post", with(s256, "response_mode", "form_post"), refuse, reasonBadRequest, true},
		{"JARM", with(s256, "response_mode", "query.jwt"), refuse, reasonBadRequest, true},
		{"fragment", with(s256, "response_mode", "fragment"), bind, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, _, ref := authzGuard().checkAuthorization(tc.params)
			if v != tc.want {
				t.Fatalf("verdict %v (%+v), want %v", v, ref, tc.want)
			}
			if v != refuse {
				return
			}
			if ref.reason != tc.reason || ref.redirect != tc.redirect {
				t.Errorf("refusal %+v, want reason %s, redirect %v", ref, tc.reason, tc.redirect)
			}
			if !validDescription(ref.description) {
				t.Errorf("error_description %q has characters RFC 6749 section 4.1.2.1 does not allow", ref.description)
			}
		})
	}
}

// TestConfidentialWithoutPKCEAuthorization checks that the opt-out lets
// requests without a challenge pass, and still checks a challenge sent.
func TestConfidentialWithoutPKCEAuthorization(t *testing.T) {
	g := authzGuard()
	g.ConfidentialWithoutPKCE = true
	if v, _, _ := g.checkAuthorization(authParams(otherApp, otherAppCB, "s")); v != pass {
		t.Errorf("verdict %v, want pass", v)
	}
	if v, _, _ := g.checkAuthorization(authParams(otherApp, otherAppCB, "s", "bad", "S256")); v != refuse {
		t.Errorf("verdict %v for a bad challenge, want refuse", v)
	}
}

// validDescription reports whether s uses only the characters RFC 6749
// allows in error_description: %x20-21 / %x23-5B / %x5D-7E.
func validDescription(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return s != ""
}

func TestErrorRedirect(t *testing.T) {
	for _, tc := range []struct {
		req  authzRequest
		want string
	}{
		{authzRequest{redirectURI: "https://a.example/cb", state: "s 1"},
			"https://a.example/cb?error=invalid_request&error_description=d+x&state=s+1"},
		{authzRequest{redirectURI: "https://a.example/cb?tenant=x&b=1"},
			"https://a.example/cb?tenant=x&b=1&error=invalid_request&error_description=d+x"},
		{authzRequest{redirectURI: "https://a.example/cb", responseMode: "fragment", state: "s"},
			"https://a.example/cb#error=invalid_request&error_description=d+x&state=s"},
		{authzRequest{redirectURI: "com.example.app:/cb"},
			"com.example.app:/cb?error=invalid_request&error_description=d+x"},
	} {
		got, err := errorRedirect(tc.req, "d x")
		if err != nil || got != tc.want {
			t.Errorf("errorRedirect(%+v) = %q, %v; want %q", tc.req, got, err, tc.want)
		}
	}
}

// FuzzCheckAuthorization feeds arbitrary query strings to the authorization
// request parser and checker and checks what a bound request guarantees.
func FuzzCheckAuthorization(f *testing.F) {
	for _, seed := range []string{
		authParams(publicApp, publicAppCB, "st", rfcChallenge, "S256").Encode(),
		authParams(exemptApp, exemptAppCB, "").Encode(),
		authParams(publicApp, "", "st", rfcVerifier, "plain").Encode(),
		"response_type=code&client_id=a&redirect_uri=https://x/&code_challenge=" + rfcChallenge + "&code_challenge=" + rfcChallenge,
		"response_type=code%20id_token&client_id=a;redirect_uri=https://x/",
		"response_type=Code&client_id=%00&redirect_uri=a:b&code_challenge_method=S256&code_challenge=" + rfcChallenge + "&response_mode=fragment",
		"request_uri=urn:x&response_type=code&client_id=a",
	} {
		f.Add(seed, false)
	}
	f.Fuzz(func(t *testing.T, rawQuery string, plainAllowed bool) {
		g := authzGuard()
		if plainAllowed {
			g.Methods = []string{methodS256, methodPlain}
		}
		params, err := url.ParseQuery(rawQuery)
		if err != nil {
			return // refused by requestParams before checkAuthorization
		}
		v, req, ref := g.checkAuthorization(params)
		switch v {
		case bind:
			for _, name := range authorizationParams {
				if len(params[name]) > 1 {
					t.Fatalf("bound a request with %s repeated", name)
				}
			}
			if !strings.Contains(strings.ToLower(params.Get("response_type")), "code") {
				t.Fatal("bound a request that is not for the code flow")
			}
			if req.clientID == "" || req.clientID != params.Get("client_id") {
				t.Fatalf("bound client %q, request has %q", req.clientID, params.Get("client_id"))
			}
			if checkRedirectURI(req.redirectURI) != nil {
				t.Fatalf("bound an invalid redirect_uri %q", req.redirectURI)
			}
			if !slices.Contains(g.Methods, req.method) || req.challenge != params.Get("code_challenge") {
				t.Fatalf("bound method %q challenge %q", req.method, req.challenge)
			}
			if req.method == methodS256 {
				sum, err := base64.RawURLEncoding.Strict().DecodeString(req.challenge)
				if err != nil || len(sum) != sha256.Size || len(req.challenge) != 43 {
					t.Fatalf("bound a malformed S256 challenge %q", req.challenge)
				}
			}
			if params.Has("request") || params.Has("request_uri") {
				t.Fatal("bound a request object")
			}
			if m := params.Get("response_mode"); m != "" && m != "query" && m != "fragment" {
				t.Fatalf("bound response_mode %q", m)
			}
		case pass:
			codeFlow := strings.Contains(strings.ToLower(params.Get("response_type")), "code")
			if codeFlow && (params.Get("code_challenge") != "" || !g.exempt(params.Get("client_id"))) {
				t.Fatalf("passed a code-flow request unchecked: %q", rawQuery)
			}
		case refuse:
			if ref == nil || ref.reason == "" || !slices.Contains(allReasons, ref.reason) {
				t.Fatalf("refusal without a known reason: %+v", ref)
			}
			if !validDescription(ref.description) {
				t.Fatalf("error_description %q is not allowed by RFC 6749", ref.description)
			}
			if ref.redirect {
				if req.clientID == "" || req.redirectURI == "" {
					t.Fatalf("redirectable refusal without client or redirect_uri: %+v", req)
				}
				target, err := errorRedirect(req, ref.description)
				if err != nil {
					t.Fatalf("errorRedirect: %v", err)
				}
				u, err := url.Parse(target)
				if err != nil {
					t.Fatalf("error redirect %q does not parse: %v", target, err)
				}
				vals := u.Query()
				if req.responseMode == "fragment" {
					vals, _ = url.ParseQuery(u.Fragment)
				}
				if vals.Get("error") != "invalid_request" || vals.Get("state") != req.state {
					t.Fatalf("error redirect %q lacks error or state", target)
				}
			}
		}
	})
}
