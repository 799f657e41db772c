package testop

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

const testRedirect = "http://127.0.0.1:9/callback" // never contacted

// rp is a relying party built from x/oauth2 and go-oidc, as the plugin is.
type rp struct {
	t     *testing.T
	p     *Provider
	oauth oauth2.Config
	http  *http.Client // does not follow redirects
}

func newRP(t *testing.T, p *Provider, secret string) *rp {
	style := oauth2.AuthStyleInParams
	if secret != "" {
		style = oauth2.AuthStyleInHeader
	}
	return &rp{
		t: t,
		p: p,
		oauth: oauth2.Config{
			ClientID:     p.ClientID(),
			ClientSecret: secret,
			RedirectURL:  testRedirect,
			Scopes:       []string{oidc.ScopeOpenID, "email", "profile"},
			Endpoint: oauth2.Endpoint{
				AuthURL:   p.Issuer() + AuthorizePath,
				TokenURL:  p.Issuer() + TokenPath,
				AuthStyle: style,
			},
		},
		http: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
}

// get fetches u without following redirects.
func (c *rp) get(u string) *http.Response {
	c.t.Helper()
	resp, err := c.http.Get(u)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// authorize sends an authorization request and returns the callback
// parameters from the redirect.
func (c *rp) authorize(opts ...oauth2.AuthCodeOption) url.Values {
	c.t.Helper()
	resp := c.get(c.oauth.AuthCodeURL("st4te", opts...))
	if resp.StatusCode != http.StatusFound {
		body, _ := io.ReadAll(resp.Body)
		c.t.Fatalf("authorize: status %d, want 302: %s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		c.t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != testRedirect {
		c.t.Fatalf("redirected to %s, want %s", got, testRedirect)
	}
	return loc.Query()
}

// login runs a PKCE login and returns the code with its verifier and nonce.
func (c *rp) login() (code, verifier, nonce string) {
	c.t.Helper()
	verifier, nonce = oauth2.GenerateVerifier(), "n-"+oauth2.GenerateVerifier()[:16]
	q := c.authorize(oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce))
	if q.Get("code") == "" {
		c.t.Fatalf("no code in callback: %v", q)
	}
	return q.Get("code"), verifier, nonce
}

// tokens logs in and exchanges the code.
func (c *rp) tokens() (*oauth2.Token, string) {
	c.t.Helper()
	code, verifier, nonce := c.login()
	tok, err := c.oauth.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		c.t.Fatalf("exchange: %v", err)
	}
	return tok, nonce
}

func (c *rp) verifier() *oidc.IDTokenVerifier {
	c.t.Helper()
	op, err := oidc.NewProvider(context.Background(), c.p.Issuer())
	if err != nil {
		c.t.Fatal(err)
	}
	return op.Verifier(&oidc.Config{ClientID: c.oauth.ClientID})
}

func idToken(t *testing.T, tok *oauth2.Token) string {
	t.Helper()
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		t.Fatal("token response has no id_token")
	}
	return raw
}

func wantOAuthError(t *testing.T, err error, code string) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("error %v, want OAuth error %s", err, code)
	}
	if re.ErrorCode != code {
		t.Fatalf("error code %q (%s), want %q", re.ErrorCode, re.ErrorDescription, code)
	}
}

func TestHappyPath(t *testing.T) {
	for _, tc := range []struct {
		alg, secret string
	}{
		{"RS256", ""},
		{"PS256", "s3cret"},
		{"ES256", ""},
		{"EdDSA", "s3cret"},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			p := New(t, Config{SigningAlg: tc.alg, ClientSecret: tc.secret, RedirectURIs: []string{testRedirect}})
			c := newRP(t, p, tc.secret)
			ctx := context.Background()

			code, verifier, nonce := c.login()
			tok, err := c.oauth.Exchange(ctx, code, oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			if tok.TokenType != "Bearer" || tok.RefreshToken == "" || tok.Expiry.IsZero() {
				t.Fatalf("token response %+v", tok)
			}

			op, err := oidc.NewProvider(ctx, p.Issuer())
			if err != nil {
				t.Fatal(err)
			}
			id, err := op.Verifier(&oidc.Config{ClientID: "test-client"}).Verify(ctx, idToken(t, tok))
			if err != nil {
				t.Fatalf("go-oidc rejected the ID token: %v", err)
			}
			if id.Nonce != nonce {
				t.Fatalf("nonce %q, want %q", id.Nonce, nonce)
			}
			if err := id.VerifyAccessToken(tok.AccessToken); err != nil {
				t.Fatalf("at_hash: %v", err)
			}
			var claims struct {
				Sub           string   `json:"sub"`
				Azp           string   `json:"azp"`
				Sid           string   `json:"sid"`
				AuthTime      int64    `json:"auth_time"`
				Email         string   `json:"email"`
				EmailVerified bool     `json:"email_verified"`
				Name          string   `json:"name"`
				Username      string   `json:"preferred_username"`
				Groups        []string `json:"groups"`
			}
			if err := id.Claims(&claims); err != nil {
				t.Fatal(err)
			}
			if claims.Sub != "alice-sub" || claims.Azp != "test-client" || claims.Sid == "" || claims.AuthTime == 0 ||
				claims.Email != "alice@example.com" || !claims.EmailVerified || claims.Name != "Alice Example" ||
				claims.Username != "alice" || !slices.Equal(claims.Groups, []string{"staff", "admins"}) {
				t.Fatalf("ID token claims %+v", claims)
			}

			info, err := op.UserInfo(ctx, oauth2.StaticTokenSource(tok))
			if err != nil {
				t.Fatalf("userinfo: %v", err)
			}
			if info.Subject != "alice-sub" || info.Email != "alice@example.com" {
				t.Fatalf("userinfo %+v", info)
			}

			reqs := p.TokenRequests()
			if len(reqs) != 1 {
				t.Fatalf("%d token requests, want 1", len(reqs))
			}
			wantMethod := "none"
			if tc.secret != "" {
				wantMethod = "client_secret_basic"
			}
			r := reqs[0]
			if r.GrantType != "authorization_code" || r.Code != code || r.CodeVerifier != verifier ||
				r.ClientID != "test-client" || r.RedirectURI != testRedirect || r.AuthMethod != wantMethod {
				t.Fatalf("recorded token request %+v", r)
			}
			auth := p.AuthRequests()
			if len(auth) != 1 || auth[0].Get("code_challenge_method") != "S256" || auth[0].Get("nonce") != nonce {
				t.Fatalf("recorded auth requests %v", auth)
			}
			if got := p.Counts(); got.Authorize != 1 || got.Token != 1 || got.Discovery != 1 || got.JWKS != 1 || got.Userinfo != 1 {
				t.Fatalf("counts %+v", got)
			}
		})
	}
}

func TestCallbackParameters(t *testing.T) {
	p := New(t, Config{})
	c := newRP(t, p, "")
	verifier := oauth2.GenerateVerifier()
	for _, tc := range []struct {
		issParam, want string
		present        bool
	}{
		{"", p.Issuer(), true},
		{"omit", "", false},
		{"https://evil.example", "https://evil.example", true},
	} {
		p.Misbehave(Misbehaviour{IssParam: tc.issParam})
		q := c.authorize(oauth2.S256ChallengeOption(verifier))
		if q.Get("state") != "st4te" || q.Get("code") == "" {
			t.Fatalf("IssParam %q: callback %v", tc.issParam, q)
		}
		if q.Has("iss") != tc.present || q.Get("iss") != tc.want {
			t.Fatalf("IssParam %q: iss %q present %v, want %q", tc.issParam, q.Get("iss"), q.Has("iss"), tc.want)
		}
	}
}

func TestFormPost(t *testing.T) {
	p := New(t, Config{})
	c := newRP(t, p, "")
	verifier := oauth2.GenerateVerifier()
	resp := c.get(c.oauth.AuthCodeURL("a&b\"<c>", oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("response_mode", "form_post")))
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	action, fields, ok := ParseFormPost(string(body))
	if !ok || action != testRedirect || fields.Get("state") != "a&b\"<c>" || fields.Get("iss") != p.Issuer() {
		t.Fatalf("form_post page parsed as %q %v %v:\n%s", action, fields, ok, body)
	}
	if _, err := c.oauth.Exchange(context.Background(), fields.Get("code"), oauth2.VerifierOption(verifier)); err != nil {
		t.Fatalf("exchange of form_post code: %v", err)
	}
}

func TestAuthorizeRejects(t *testing.T) {
	p := New(t, Config{RedirectURIs: []string{testRedirect}})
	c := newRP(t, p, "")
	challenge := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	valid := func() url.Values {
		return url.Values{
			"client_id": {"test-client"}, "redirect_uri": {testRedirect}, "response_type": {"code"},
			"scope": {"openid"}, "state": {"s"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"},
		}
	}
	for _, tc := range []struct {
		name      string
		change    func(url.Values)
		mis       Misbehaviour
		wantError string // "" = a code; "400" = no redirect
	}{
		{"valid", func(url.Values) {}, Misbehaviour{}, ""},
		{"unknown client", func(v url.Values) { v.Set("client_id", "nope") }, Misbehaviour{}, "400"},
		{"unregistered redirect_uri", func(v url.Values) { v.Set("redirect_uri", "http://127.0.0.1:9/other") }, Misbehaviour{}, "400"},
		{"missing redirect_uri", func(v url.Values) { v.Del("redirect_uri") }, Misbehaviour{}, "400"},
		{"no PKCE", func(v url.Values) { v.Del("code_challenge"); v.Del("code_challenge_method") }, Misbehaviour{}, "invalid_request"},
		{"plain PKCE", func(v url.Values) { v.Set("code_challenge_method", "plain") }, Misbehaviour{}, "invalid_request"},
		{"method defaults to plain", func(v url.Values) { v.Del("code_challenge_method") }, Misbehaviour{}, "invalid_request"},
		{"short challenge", func(v url.Values) { v.Set("code_challenge", "abc") }, Misbehaviour{}, "invalid_request"},
		{"implicit flow", func(v url.Values) { v.Set("response_type", "token") }, Misbehaviour{}, "unsupported_response_type"},
		{"no openid scope", func(v url.Values) { v.Set("scope", "email") }, Misbehaviour{}, "invalid_scope"},
		{"repeated state", func(v url.Values) { v.Add("state", "t") }, Misbehaviour{}, "invalid_request"},
		{"AuthError", func(url.Values) {}, Misbehaviour{AuthError: "access_denied"}, "access_denied"},
		{"bad max_age", func(v url.Values) { v.Set("max_age", "-5") }, Misbehaviour{}, "invalid_request"},
		{"max_age with a sign", func(v url.Values) { v.Set("max_age", "+5") }, Misbehaviour{}, "invalid_request"},
		{"max_age", func(v url.Values) { v.Set("max_age", "0") }, Misbehaviour{}, ""},
		{"AcceptWithoutPKCE", func(v url.Values) { v.Del("code_challenge"); v.Del("code_challenge_method") }, Misbehaviour{AcceptWithoutPKCE: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.Misbehave(tc.mis)
			v := valid()
			tc.change(v)
			resp := c.get(p.Issuer() + AuthorizePath + "?" + v.Encode())
			if tc.wantError == "400" {
				if resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("status %d, want 400 without redirect", resp.StatusCode)
				}
				return
			}
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("status %d, want 302", resp.StatusCode)
			}
			loc, _ := url.Parse(resp.Header.Get("Location"))
			q := loc.Query()
			if q.Get("error") != tc.wantError || (tc.wantError == "") != (q.Get("code") != "") {
				t.Fatalf("callback %v, want error %q", q, tc.wantError)
			}
			if q.Get("iss") != p.Issuer() || (v.Get("state") == "s" && q.Get("state") != "s") {
				t.Fatalf("callback %v lacks iss or state", q)
			}
		})
	}
}

func TestPKCEVerification(t *testing.T) {
	p := New(t, Config{})
	c := newRP(t, p, "")
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		verifier func(good string) string
	}{
		{"wrong verifier", func(string) string { return oauth2.GenerateVerifier() }},
		{"missing verifier", func(string) string { return "" }},
		{"challenge sent as verifier", func(good string) string { return oauth2.S256ChallengeFromVerifier(good) + "x" }},
		{"too short", func(good string) string { return good[:42] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, good, _ := c.login()
			var opts []oauth2.AuthCodeOption
			if v := tc.verifier(good); v != "" {
				opts = append(opts, oauth2.VerifierOption(v))
			}
			_, err := c.oauth.Exchange(ctx, code, opts...)
			wantOAuthError(t, err, "invalid_grant")
			// The failed attempt used the code up.
			_, err = c.oauth.Exchange(ctx, code, oauth2.VerifierOption(good))
			wantOAuthError(t, err, "invalid_grant")
		})
	}
}

func TestCodeReuseRevokesTokens(t *testing.T) {
	p := New(t, Config{})
	c := newRP(t, p, "")
	ctx := context.Background()
	code, verifier, _ := c.login()
	tok, err := c.oauth.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.oauth.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	wantOAuthError(t, err, "invalid_grant")

	req, _ := http.NewRequest(http.MethodGet, p.Issuer()+UserinfoPath, nil)
	tok.SetAuthHeader(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("userinfo with a token from a reused code: status %d, want 401", resp.StatusCode)
	}
	_, err = c.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	wantOAuthError(t, err, "invalid_grant")
}

func TestCodeRedirectURIMismatch(t *testing.T) {
	p := New(t, Config{})
	c := newRP(t, p, "")
	code, verifier, _ := c.login()
	other := c.oauth
	other.RedirectURL = "http://127.0.0.1:9/elsewhere"
	_, err := other.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
	wantOAuthError(t, err, "invalid_grant")
}

func TestRefreshRotation(t *testing.T) {
	p := New(t, Config{})
	c := newRP(t, p, "")
	ctx := context.Background()
	first, _ := c.tokens()
	refresh := func(rt string) (*oauth2.Token, error) {
		return c.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token()
	}

	second, err := refresh(first.RefreshToken)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if second.RefreshToken == "" || second.RefreshToken == first.RefreshToken {
		t.Fatalf("refresh token not rotated: %q", second.RefreshToken)
	}
	id, err := c.verifier().Verify(ctx, idToken(t, second))
	if err != nil {
		t.Fatalf("ID token from refresh: %v", err)
	}
	if id.Subject != "alice-sub" || id.Nonce != "" {
		t.Fatalf("ID token from refresh: sub %q nonce %q", id.Subject, id.Nonce)
	}
	if got := p.TokenRequests()[1]; got.GrantType != "refresh_token" || got.RefreshToken != first.RefreshToken {
		t.Fatalf("recorded %+v", got)
	}

	_, err = refresh(first.RefreshToken)
	wantOAuthError(t, err, "invalid_grant")
	// Reuse revoked the grant, so the newest refresh token is dead too.
	_, err = refresh(second.RefreshToken)
	wantOAuthError(t, err, "invalid_grant")
}

func TestClientAuthentication(t *testing.T) {
	p := New(t, Config{ClientSecret: "s3cret"})
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		secret    string
		style     oauth2.AuthStyle
		wantError string
		wantAuth  string
	}{
		{"basic", "s3cret", oauth2.AuthStyleInHeader, "", "client_secret_basic"},
		{"post", "s3cret", oauth2.AuthStyleInParams, "", "client_secret_post"},
		{"wrong secret", "nope", oauth2.AuthStyleInHeader, "invalid_client", "client_secret_basic"},
		{"no secret", "", oauth2.AuthStyleInParams, "invalid_client", "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRP(t, p, tc.secret)
			c.oauth.Endpoint.AuthStyle = tc.style
			code, verifier, _ := c.login()
			_, err := c.oauth.Exchange(ctx, code, oauth2.VerifierOption(verifier))
			reqs := p.TokenRequests()
			if got := reqs[len(reqs)-1].AuthMethod; got != tc.wantAuth {
				t.Fatalf("recorded auth method %q, want %q", got, tc.wantAuth)
			}
			if tc.wantError == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantOAuthError(t, err, tc.wantError)
			// A failed client authentication does not use the code up.
			c = newRP(t, p, "s3cret")
			if _, err := c.oauth.Exchange(ctx, code, oauth2.VerifierOption(verifier)); err != nil {
				t.Fatalf("exchange after failed client authentication: %v", err)
			}
		})
	}

	public := New(t, Config{})
	c := newRP(t, public, "s3cret")
	code, verifier, _ := c.login()
	_, err := c.oauth.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	wantOAuthError(t, err, "invalid_client")

	// x/oauth2's auto-detection first tries Basic with an empty secret, is
	// refused, and retries in the form; the code survives the first try.
	c = newRP(t, public, "")
	c.oauth.Endpoint.AuthStyle = oauth2.AuthStyleAutoDetect
	code, verifier, _ = c.login()
	if _, err := c.oauth.Exchange(ctx, code, oauth2.VerifierOption(verifier)); err != nil {
		t.Fatalf("auto-detected auth style: %v", err)
	}
	reqs := public.TokenRequests()
	if got := reqs[len(reqs)-1].AuthMethod; got != "none" {
		t.Fatalf("auto-detected auth method %q, want none", got)
	}
}

func TestGoOIDCRejectsMisbehaviour(t *testing.T) {
	for _, tc := range []struct {
		name string
		mis  Misbehaviour
	}{
		{"WrongIssuer", Misbehaviour{WrongIssuer: true}},
		{"WrongAudience", Misbehaviour{WrongAudience: true}},
		{"Expired", Misbehaviour{Expired: true}},
		{"BadSignature", Misbehaviour{BadSignature: true}},
		{"AlgNone", Misbehaviour{AlgNone: true}},
		{"SignHS256", Misbehaviour{SignHS256: true}},
		{"UnknownKid", Misbehaviour{UnknownKid: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(t, Config{ClientSecret: "a-secret-long-enough-for-hs256-keys!"})
			c := newRP(t, p, "a-secret-long-enough-for-hs256-keys!")
			verifier := c.verifier()
			p.Misbehave(tc.mis)
			tok, _ := c.tokens()
			if _, err := verifier.Verify(context.Background(), idToken(t, tok)); err == nil {
				t.Fatal("go-oidc accepted the ID token")
			}
		})
	}
}

// Misbehaviours that go-oidc does not catch, so the plugin must: the claims
// must say what the switch promises.
func TestClaimMisbehaviour(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mis   Misbehaviour
		check func(t *testing.T, c map[string]any, nonce string)
	}{
		{"WrongNonce", Misbehaviour{WrongNonce: true}, func(t *testing.T, c map[string]any, nonce string) {
			if c["nonce"] == nonce || c["nonce"] == "" {
				t.Fatalf("nonce %v", c["nonce"])
			}
		}},
		{"ExtraAudienceNoAzp", Misbehaviour{ExtraAudienceNoAzp: true}, func(t *testing.T, c map[string]any, _ string) {
			if _, ok := c["azp"]; ok || len(c["aud"].([]any)) != 2 {
				t.Fatalf("aud %v azp %v", c["aud"], c["azp"])
			}
		}},
		{"WrongAzp", Misbehaviour{WrongAzp: true}, func(t *testing.T, c map[string]any, _ string) {
			if c["azp"] != "other-client" {
				t.Fatalf("azp %v", c["azp"])
			}
		}},
		{"IssuedInFuture", Misbehaviour{IssuedInFuture: true}, func(t *testing.T, c map[string]any, _ string) {
			if iat := int64(c["iat"].(float64)); iat < time.Now().Add(9*time.Minute).Unix() {
				t.Fatalf("iat %v", iat)
			}
		}},
		{"ThinIDToken", Misbehaviour{ThinIDToken: true}, func(t *testing.T, c map[string]any, _ string) {
			if _, ok := c["email"]; ok || c["sub"] != "alice-sub" {
				t.Fatalf("claims %v", c)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(t, Config{})
			c := newRP(t, p, "")
			verifier := c.verifier()
			p.Misbehave(tc.mis)
			tok, nonce := c.tokens()
			id, err := verifier.Verify(context.Background(), idToken(t, tok))
			if err != nil {
				t.Fatalf("go-oidc: %v", err)
			}
			var claims map[string]any
			if err := id.Claims(&claims); err != nil {
				t.Fatal(err)
			}
			tc.check(t, claims, nonce)
		})
	}
}

// TestStepUp: acr is the first requested acr_values value and auth_time
// the login's time, unless a step-up misbehaviour says otherwise.
func TestStepUp(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mis      Misbehaviour
		acr      []string // acr_values sent, nil for none
		wantACR  any      // nil: no acr claim
		authTime string   // "now", "old" or "none"
	}{
		{"no acr_values", Misbehaviour{}, nil, nil, "now"},
		{"acr_values", Misbehaviour{}, []string{"gold", "silver"}, "gold", "now"},
		{"WeakACR", Misbehaviour{WeakACR: true}, []string{"gold"}, "weak", "now"},
		{"OldAuthTime", Misbehaviour{OldAuthTime: true}, nil, nil, "old"},
		{"OmitAuthTime", Misbehaviour{OmitAuthTime: true}, []string{"gold"}, "gold", "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(t, Config{})
			c := newRP(t, p, "")
			p.Misbehave(tc.mis)
			verifier, nonce := oauth2.GenerateVerifier(), "n-"+oauth2.GenerateVerifier()[:16]
			opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce), oauth2.SetAuthURLParam("max_age", "60")}
			if tc.acr != nil {
				opts = append(opts, oauth2.SetAuthURLParam("acr_values", strings.Join(tc.acr, " ")))
			}
			q := c.authorize(opts...)
			tok, err := c.oauth.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			id, err := c.verifier().Verify(context.Background(), idToken(t, tok))
			if err != nil {
				t.Fatal(err)
			}
			var claims map[string]any
			if err := id.Claims(&claims); err != nil {
				t.Fatal(err)
			}
			if claims["acr"] != tc.wantACR {
				t.Errorf("acr %v, want %v", claims["acr"], tc.wantACR)
			}
			at, has := claims["auth_time"].(float64)
			age := time.Now().Unix() - int64(at)
			switch {
			case tc.authTime == "none" && has,
				tc.authTime == "now" && (!has || age > 5),
				tc.authTime == "old" && (!has || age < 3500):
				t.Errorf("auth_time %v (age %ds), want %s", claims["auth_time"], age, tc.authTime)
			}
		})
	}
}

func TestTokenEndpointSwitches(t *testing.T) {
	p := New(t, Config{})
	c := newRP(t, p, "")
	ctx := context.Background()

	p.Misbehave(Misbehaviour{TokenError: "temporarily_unavailable"})
	code, verifier, _ := c.login()
	_, err := c.oauth.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	wantOAuthError(t, err, "temporarily_unavailable")

	p.Misbehave(Misbehaviour{TokenStatus500: true})
	_, err = c.oauth.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != http.StatusInternalServerError {
		t.Fatalf("error %v, want status 500", err)
	}

	p.Misbehave(Misbehaviour{OmitIDToken: true})
	tok, err := c.oauth.Exchange(ctx, code, oauth2.VerifierOption(verifier)) // switches did not use the code up
	if err != nil {
		t.Fatal(err)
	}
	if tok.Extra("id_token") != nil {
		t.Fatal("OmitIDToken: id_token present")
	}
}

func TestUserinfo(t *testing.T) {
	p := New(t, Config{})
	u := DefaultUser()
	u.Extra = map[string]any{"email_verified": "true", "groups": nil, "hd": "example.com"}
	p.SetUser(u)
	c := newRP(t, p, "")
	tok, _ := c.tokens()

	fetch := func(token string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodGet, p.Issuer()+UserinfoPath, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var claims map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&claims)
		return resp.StatusCode, claims
	}
	status, claims := fetch(tok.AccessToken)
	if status != http.StatusOK || claims["sub"] != "alice-sub" || claims["email_verified"] != "true" ||
		claims["hd"] != "example.com" || claims["groups"] != nil {
		t.Fatalf("userinfo %d %v", status, claims)
	}
	p.Misbehave(Misbehaviour{UserinfoWrongSub: true})
	if _, claims := fetch(tok.AccessToken); claims["sub"] == "alice-sub" {
		t.Fatal("UserinfoWrongSub: sub unchanged")
	}
	if status, _ := fetch(idToken(t, tok)); status != http.StatusUnauthorized {
		t.Fatalf("ID token accepted as access token: %d", status)
	}
	if status, _ := fetch(corruptSignature(tok.AccessToken)); status != http.StatusUnauthorized {
		t.Fatalf("forged access token: %d", status)
	}
}

func TestDiscoverySwitches(t *testing.T) {
	p := New(t, Config{})
	discover := func() (int, map[string]any) {
		resp, err := http.Get(p.Issuer() + DiscoveryPath)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var doc map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&doc)
		return resp.StatusCode, doc
	}
	status, doc := discover()
	if status != 200 || doc["issuer"] != p.Issuer() || doc["authorization_response_iss_parameter_supported"] != true ||
		doc["end_session_endpoint"] != p.Issuer()+EndSessionPath {
		t.Fatalf("discovery %d %v", status, doc)
	}
	if m, _ := doc["code_challenge_methods_supported"].([]any); len(m) != 1 || m[0] != "S256" {
		t.Fatalf("code_challenge_methods_supported %v", doc["code_challenge_methods_supported"])
	}

	p.Misbehave(Misbehaviour{DiscoveryDown: true})
	if status, _ := discover(); status != http.StatusServiceUnavailable {
		t.Fatalf("DiscoveryDown: %d", status)
	}
	p.Misbehave(Misbehaviour{NoPKCEMethodsInDiscovery: true, NoEndSession: true})
	if _, doc := discover(); doc["code_challenge_methods_supported"] != nil || doc["end_session_endpoint"] != nil {
		t.Fatalf("NoPKCEMethodsInDiscovery, NoEndSession: %v", doc)
	}
	p.Misbehave(Misbehaviour{PlainOnlyInDiscovery: true})
	if _, doc := discover(); doc["code_challenge_methods_supported"].([]any)[0] != "plain" {
		t.Fatalf("PlainOnlyInDiscovery: %v", doc["code_challenge_methods_supported"])
	}
	if got := p.Counts().Discovery; got != 4 {
		t.Fatalf("discovery count %d, want 4", got)
	}
}

func TestEndSession(t *testing.T) {
	p := New(t, Config{PostLogoutRedirectURIs: []string{"http://127.0.0.1:9/bye"}})
	c := newRP(t, p, "")
	tok, _ := c.tokens()
	end := func(q url.Values) *http.Response {
		return c.get(p.Issuer() + EndSessionPath + "?" + q.Encode())
	}

	if resp := end(url.Values{"post_logout_redirect_uri": {"http://127.0.0.1:9/bye"}}); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("redirect without client_id or hint: %d", resp.StatusCode)
	}
	if resp := end(url.Values{"client_id": {"test-client"}, "post_logout_redirect_uri": {"http://127.0.0.1:9/evil"}}); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("unregistered post_logout_redirect_uri: %d", resp.StatusCode)
	}
	if resp := end(url.Values{"id_token_hint": {corruptSignature(idToken(t, tok))}}); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("forged id_token_hint: %d", resp.StatusCode)
	}
	resp := end(url.Values{"id_token_hint": {idToken(t, tok)}, "client_id": {"test-client"},
		"post_logout_redirect_uri": {"http://127.0.0.1:9/bye"}, "state": {"x"}})
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "http://127.0.0.1:9/bye?state=x" {
		t.Fatalf("logout: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, err := c.oauth.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	wantOAuthError(t, err, "invalid_grant")

	if resp := end(url.Values{}); resp.StatusCode != http.StatusOK {
		t.Fatalf("bare logout: %d", resp.StatusCode)
	}
	if got := len(p.EndSessionRequests()); got != 5 {
		t.Fatalf("%d end-session requests recorded, want 5", got)
	}
	p.Misbehave(Misbehaviour{NoEndSession: true})
	if resp := end(url.Values{}); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("NoEndSession: %d", resp.StatusCode)
	}
}

func TestRotateKeys(t *testing.T) {
	p := New(t, Config{})
	c := newRP(t, p, "")
	ctx := context.Background()
	verifier := c.verifier()
	before, _ := c.tokens()
	p.RotateKeys()
	after, _ := c.tokens()
	if kid(t, idToken(t, before)) == kid(t, idToken(t, after)) {
		t.Fatal("kid did not change")
	}
	for _, tok := range []*oauth2.Token{before, after} {
		if _, err := verifier.Verify(ctx, idToken(t, tok)); err != nil {
			t.Fatalf("after rotation: %v", err)
		}
	}
	if n := len(p.jwks().Keys); n != 2 {
		t.Fatalf("JWKS has %d keys, want current and previous", n)
	}
}

func kid(t *testing.T, jwt string) string {
	t.Helper()
	h, err := base64.RawURLEncoding.DecodeString(strings.Split(jwt, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var header struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(h, &header); err != nil {
		t.Fatal(err)
	}
	return header.Kid
}

func TestSignIDToken(t *testing.T) {
	p := New(t, Config{SigningAlg: "ES256"})
	c := newRP(t, p, "")
	verifier := c.verifier()
	claims := p.IDTokenClaims("n")
	if _, err := verifier.Verify(context.Background(), p.SignIDToken(claims)); err != nil {
		t.Fatalf("valid crafted token: %v", err)
	}
	claims["iss"] = p.Issuer() + "/"
	if _, err := verifier.Verify(context.Background(), p.SignIDToken(claims)); err == nil {
		t.Fatal("go-oidc accepted an issuer with a trailing slash")
	}
}

func TestDelayRespectsCancellation(t *testing.T) {
	p := New(t, Config{})
	p.Misbehave(Misbehaviour{Delay: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.Issuer()+DiscoveryPath, nil)
	start := time.Now()
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want deadline exceeded", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("Delay did not end with the request")
	}
	if got := p.Counts().Discovery; got != 1 {
		t.Fatalf("discovery count %d", got)
	}
}
