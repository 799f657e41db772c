package pkceguard

import (
	"encoding/base64"
	"net/http/httptest"
	"net/url"
	"testing"
)

func TestClientIdentity(t *testing.T) {
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(user)+":"+url.QueryEscape(pass)))
	}
	jwt := func(payload string) string {
		return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".sig"
	}
	for _, tc := range []struct {
		name, auth string
		form       url.Values
		id         string
		authn      bool
		err        bool
	}{
		{"public client", "", url.Values{"client_id": {"a"}}, "a", false, false},
		{"client_secret_post", "", url.Values{"client_id": {"a"}, "client_secret": {"s"}}, "a", true, false},
		{"client_secret_basic", basic("a", "s"), url.Values{}, "a", true, false},
		{"basic with form-encoded id", basic("a b:c", "s"), url.Values{}, "a b:c", true, false},
		{"basic and the same body id", basic("a", "s"), url.Values{"client_id": {"a"}}, "a", true, false},
		{"basic and another body id", basic("a", "s"), url.Values{"client_id": {"b"}}, "", false, true},
		{"malformed basic", "Basic !!!", url.Values{}, "", false, true},
		{"basic without colon", "Basic " + base64.StdEncoding.EncodeToString([]byte("a")), url.Values{}, "", false, true},
		{"private_key_jwt without client_id", "", url.Values{"client_assertion": {jwt(`{"sub":"a","iss":"a"}`)}}, "a", true, false},
		{"garbage assertion", "", url.Values{"client_assertion": {"x"}}, "", true, false},
		{"bearer header ignored", "Bearer x", url.Values{"client_id": {"a"}}, "a", false, false},
		{"nothing", "", url.Values{}, "", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/oauth/token", nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			id, authn, err := clientIdentity(r, tc.form)
			if (err != nil) != tc.err || id != tc.id || authn != tc.authn {
				t.Errorf("got %q, %v, %v; want %q, %v, error %v", id, authn, err, tc.id, tc.authn, tc.err)
			}
		})
	}
}

// TestCheckTokenRequests covers token requests the guard refuses before
// looking up the code.
func TestCheckTokenRequests(t *testing.T) {
	g, _ := newGuard(t, flowsConfig)
	for _, tc := range []struct {
		name string
		form url.Values
		code string // "" when the request passes
	}{
		{"refresh token passes", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"r"}}, ""},
		{"device code passes", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}}, ""},
		{"no grant_type passes (the server refuses it)", url.Values{"code": {"c"}}, ""},
		{"grant_type in another case is guarded", url.Values{"grant_type": {"Authorization_Code"}, "code": {"c"}, "client_id": {"a"}}, "invalid_grant"},
		{"no code", url.Values{"grant_type": {"authorization_code"}}, "invalid_request"},
		{"repeated code", url.Values{"grant_type": {"authorization_code"}, "code": {"a", "b"}}, "invalid_request"},
		{"repeated grant_type", url.Values{"grant_type": {"refresh_token", "authorization_code"}, "code": {"a"}}, "invalid_request"},
		{"repeated code_verifier", url.Values{"grant_type": {"authorization_code"}, "code": {"a"}, "code_verifier": {"x", "y"}}, "invalid_request"},
		{"unknown code", url.Values{"grant_type": {"authorization_code"}, "code": {"c"}, "client_id": {"a"}}, "invalid_grant"},
		{"unknown code of an exempt client passes", url.Values{"grant_type": {"authorization_code"}, "code": {"c"}, "client_id": {exemptApp}}, ""},
		{"unknown code with credentials is refused by default", url.Values{"grant_type": {"authorization_code"}, "code": {"c"}, "client_id": {confApp}, "client_secret": {"s"}}, "invalid_grant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/oauth/token", nil)
			_, terr := g.checkToken(r, tc.form)
			switch {
			case tc.code == "" && terr != nil:
				t.Errorf("refused with %+v, want it passed", terr)
			case tc.code != "" && (terr == nil || terr.code != tc.code):
				t.Errorf("got %+v, want %s", terr, tc.code)
			}
			if terr != nil && !validDescription(terr.description) {
				t.Errorf("error_description %q has characters RFC 6749 does not allow", terr.description)
			}
		})
	}
}
