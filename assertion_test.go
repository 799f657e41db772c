package pkceauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/zap"
)

// writeKeyFile writes a new P-256 key as PEM (PKCS#8 or, with sec1, SEC 1)
// and returns its path and the key.
func writeKeyFile(t testing.TB, sec1 bool) (string, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if sec1 {
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		block = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
	} else {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}
	path := filepath.Join(t.TempDir(), "assertion.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, key
}

// newAssertionHandler is a handler with only what the assertion needs,
// signing with a key from a file.
func newAssertionHandler(t testing.TB, cfg AssertionConfig) (*PKCEAuth, *ecdsa.PrivateKey) {
	t.Helper()
	file, key := writeKeyFile(t, false)
	cfg.KeyFiles = []string{file}
	p := &PKCEAuth{Issuer: "https://idp.example", ClientID: "app", Assertion: &cfg, logger: zap.NewNop()}
	p.cores = []*PKCEAuth{p}
	p.setDefaults()
	if err := p.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if err := p.provisionAssertion(caddy.Context{}, caddy.NewReplacer()); err != nil {
		t.Fatalf("provisionAssertion: %v", err)
	}
	return p, key
}

// testSession is bob's session as newSession and activate would build it
// (user_id_claim oid): the standard claims in their fields, the others in
// Claims.
func testSession(t testing.TB) *activeSession {
	s := &session{
		UserID: "bob-oid", Subject: "bob-sub", Email: "bob@example.com", EmailVerified: false,
		Name: "Bob", PreferredUsername: "bob", Groups: []string{"dev", "ops"},
		Claims:   map[string]string{"department": "R&D", "realm_access.roles": "a,b"},
		IssuedAt: now().Unix(), Expires: now().Add(time.Hour).Unix(), LastSeen: now().Unix(),
	}
	p := &PKCEAuth{UserIDClaim: "oid", GroupsClaim: "groups"}
	p.stdClaims = []string{"email", "email_verified", "groups", "name", "oid", "preferred_username", "sub"}
	return p.activate(s)
}

// parseAssertion verifies raw with key and returns its header and claims.
func parseAssertion(t testing.TB, raw string, key *ecdsa.PublicKey) (jose.Header, map[string]any) {
	t.Helper()
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("assertion %q does not parse: %v", raw, err)
	}
	var claims map[string]any
	if err := tok.Claims(key, &claims); err != nil {
		t.Fatalf("assertion signature does not verify: %v", err)
	}
	return tok.Headers[0], claims
}

// TestAssertionClaims: the payload has the registered claims, the listed
// ones with their JSON types, and leaves out what the session lacks.
func TestAssertionClaims(t *testing.T) {
	s := testSession(t)
	cases := []struct {
		name   string
		claims []string
		want   map[string]any // besides iss sub aud iat nbf exp jti
	}{
		{"none", nil, map[string]any{}},
		{"standard claims typed", []string{"email", "email_verified", "groups", "name", "preferred_username"},
			map[string]any{"email": "bob@example.com", "email_verified": false, "groups": []any{"dev", "ops"}, "name": "Bob", "preferred_username": "bob"}},
		{"extra and dotted claims as strings", []string{"department", "realm_access.roles"},
			map[string]any{"department": "R&D", "realm_access.roles": "a,b"}},
		{"missing claims left out", []string{"hd", "email"}, map[string]any{"email": "bob@example.com"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, key := newAssertionHandler(t, AssertionConfig{Audience: "https://app.internal", Claims: tc.claims, Issuer: "https://login.example"})
			r := httptest.NewRequest(http.MethodGet, "http://site.test/", nil)
			t0 := now().Unix()
			m, err := p.mintAssertion(r, s, t0)
			if err != nil {
				t.Fatal(err)
			}
			hdr, got := parseAssertion(t, m.token, &key.PublicKey)
			if hdr.Algorithm != "ES256" || hdr.KeyID != p.assertion.keys.kid || hdr.KeyID == "" || hdr.ExtraHeaders["typ"] != "JWT" {
				t.Errorf("header %+v: want alg ES256, typ JWT, kid %q", hdr, p.assertion.keys.kid)
			}
			for k, want := range map[string]any{
				"iss": "https://login.example", "sub": "bob-oid", "aud": "https://app.internal",
				"iat": float64(t0), "nbf": float64(t0), "exp": float64(t0 + 60),
			} {
				if !reflect.DeepEqual(got[k], want) {
					t.Errorf("%s = %#v, want %#v", k, got[k], want)
				}
				delete(got, k)
			}
			if jti, _ := got["jti"].(string); !base64url43.MatchString(jti) {
				t.Errorf("jti %q is not 256 random bits", jti)
			}
			delete(got, "jti")
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("claims %#v, want %#v", got, tc.want)
			}
			if m.renewAt != t0+30 {
				t.Errorf("renewAt %d, want halfway through the lifetime (%d)", m.renewAt, t0+30)
			}
		})
	}

	t.Run("never outlives the session", func(t *testing.T) {
		p, key := newAssertionHandler(t, AssertionConfig{Audience: "a"})
		short := testSession(t)
		t0 := now().Unix()
		short.Expires = t0 + 20
		m, err := p.mintAssertion(httptest.NewRequest(http.MethodGet, "http://site.test/", nil), short, t0)
		if err != nil {
			t.Fatal(err)
		}
		_, got := parseAssertion(t, m.token, &key.PublicKey)
		if got["exp"] != float64(t0+20) || m.renewAt != t0+10 {
			t.Errorf("exp %v renewAt %d, want the session's end %d and halfway %d", got["exp"], m.renewAt, t0+20, t0+10)
		}
		if got["iss"] != "http://site.test" {
			t.Errorf("default iss %v, want the request's origin http://site.test", got["iss"])
		}
	})
}

// TestAssertionCache: a session's assertion is reused until half its
// lifetime has passed, then minted again; with the default issuer another
// origin gets its own; the client's header never survives.
func TestAssertionCache(t *testing.T) {
	p, key := newAssertionHandler(t, AssertionConfig{Audience: "https://app.internal", Lifetime: caddy.Duration(time.Minute)})
	a := testSession(t)
	req := func(target string, header ...string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Add(header[i], header[i+1])
		}
		if err := p.setAssertion(r, a); err != nil {
			t.Fatal(err)
		}
		if v := r.Header.Values("X-Identity-Assertion"); len(v) != 1 {
			t.Fatalf("X-Identity-Assertion %q, want exactly one value", v)
		}
		return r
	}
	first := req("http://site.test/", "X-Identity-Assertion", "forged").Header.Get("X-Identity-Assertion")
	if first == "forged" {
		t.Fatal("the client's header was passed on")
	}
	parseAssertion(t, first, &key.PublicKey)

	// 28s: the wall clock may have crossed a second since the first mint.
	advanceClock(t, 28*time.Second)
	if again := req("http://site.test/").Header.Get("X-Identity-Assertion"); again != first {
		t.Error("assertion minted again within the first half of its lifetime")
	}
	advanceClock(t, 2*time.Second)
	before := now().Unix()
	renewed := req("http://site.test/").Header.Get("X-Identity-Assertion")
	if renewed == first {
		t.Fatal("assertion reused at half its lifetime; want a new one")
	}
	_, claims := parseAssertion(t, renewed, &key.PublicKey)
	if iat, _ := claims["iat"].(float64); int64(iat) < before || int64(iat) > now().Unix() {
		t.Errorf("renewed assertion iat %v, want now (%d)", claims["iat"], before)
	}
	if again := req("http://site.test/").Header.Get("X-Identity-Assertion"); again != renewed {
		t.Error("the renewed assertion is not reused")
	}

	other := req("http://other.test/").Header.Get("X-Identity-Assertion")
	if _, c := parseAssertion(t, other, &key.PublicKey); c["iss"] != "http://other.test" {
		t.Errorf("under another host the iss is %v, want http://other.test", c["iss"])
	}
	tlsReq := httptest.NewRequest(http.MethodGet, "https://other.test/", nil)
	tlsReq.TLS = &tls.ConnectionState{}
	if err := p.setAssertion(tlsReq, a); err != nil {
		t.Fatal(err)
	}
	if _, c := parseAssertion(t, tlsReq.Header.Get("X-Identity-Assertion"), &key.PublicKey); c["iss"] != "https://other.test" {
		t.Errorf("over TLS the iss is %v, want https://other.test", c["iss"])
	}

	// A fixed issuer does not depend on the host: one assertion serves all.
	p.assertion.issuer = "https://app.example"
	fixed := req("http://site.test/").Header.Get("X-Identity-Assertion")
	if fixed2 := req("http://other.test/").Header.Get("X-Identity-Assertion"); fixed2 != fixed {
		t.Error("with a configured issuer another host minted a new assertion")
	}

	// Another session has its own.
	b := testSession(t)
	rb := httptest.NewRequest(http.MethodGet, "http://site.test/", nil)
	if err := p.setAssertion(rb, b); err != nil {
		t.Fatal(err)
	}
	if rb.Header.Get("X-Identity-Assertion") == fixed {
		t.Error("two sessions share an assertion")
	}
}

// TestAssertionValidate: the assertion block's errors name what is wrong.
func TestAssertionValidate(t *testing.T) {
	off := "off"
	cases := map[string]struct {
		cfg     AssertionConfig
		mutate  func(*PKCEAuth)
		wantErr string
	}{
		"ok":                   {cfg: AssertionConfig{Audience: "https://app.internal"}},
		"jwks off":             {cfg: AssertionConfig{Audience: "a", JWKSPath: &off}},
		"no audience":          {cfg: AssertionConfig{}, wantErr: "audience is required"},
		"audience with space":  {cfg: AssertionConfig{Audience: "a b"}, wantErr: "audience is required, without spaces"},
		"reserved claim":       {cfg: AssertionConfig{Audience: "a", Claims: []string{"email", "exp"}}, wantErr: "claims: exp is set by the module itself"},
		"duplicate claim":      {cfg: AssertionConfig{Audience: "a", Claims: []string{"email", "email"}}, wantErr: "claims: email is listed twice"},
		"lifetime too short":   {cfg: AssertionConfig{Audience: "a", Lifetime: caddy.Duration(5 * time.Second)}, wantErr: "lifetime must be between 10s and 1h0m0s"},
		"lifetime too long":    {cfg: AssertionConfig{Audience: "a", Lifetime: caddy.Duration(2 * time.Hour)}, wantErr: "lifetime must be between"},
		"bad header name":      {cfg: AssertionConfig{Audience: "a", Header: "X Bad"}, wantErr: `header "X Bad" is not a valid header name`},
		"cookie header":        {cfg: AssertionConfig{Audience: "a", Header: "cookie"}, wantErr: "header cookie cannot carry the assertion"},
		"header also mapped":   {cfg: AssertionConfig{Audience: "a", Header: "X-User"}, mutate: func(p *PKCEAuth) { p.Headers = map[string]string{"X_User": "email"} }, wantErr: "header X-User is also set by header"},
		"header is the bearer": {cfg: AssertionConfig{Audience: "a", Header: "authorization"}, mutate: func(p *PKCEAuth) { p.PassAccessToken = "Authorization" }, wantErr: "also set by pass_access_token"},
		"jwks relative":        {cfg: AssertionConfig{Audience: "a", JWKSPath: ptr("jwks")}, wantErr: `jwks_path must be a path starting with /`},
		"jwks is the callback": {cfg: AssertionConfig{Audience: "a", JWKSPath: ptr("/oauth2/callback")}, wantErr: "is already the callback_path or logout_path"},
		"jwks is userinfo":     {cfg: AssertionConfig{Audience: "a", JWKSPath: ptr("/oauth2/userinfo")}, wantErr: "jwks_path and userinfo_path must differ"},
		"empty key file":       {cfg: AssertionConfig{Audience: "a", KeyFiles: []string{""}}, wantErr: "key_files[0] is empty"},
		"issuer with space":    {cfg: AssertionConfig{Audience: "a", Issuer: "https://a b"}, wantErr: "must not contain spaces"},
		"userinfo relative":    {cfg: AssertionConfig{Audience: "a"}, mutate: func(p *PKCEAuth) { p.UserinfoPath = ptr("me") }, wantErr: "userinfo_path must be a path starting with /"},
		"userinfo is logout":   {mutate: func(p *PKCEAuth) { p.Assertion = nil; p.UserinfoPath = ptr("/oauth2/logout") }, wantErr: "userinfo_path /oauth2/logout is already"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := tc.cfg
			p := &PKCEAuth{Issuer: "https://idp.example", ClientID: "app", Assertion: &cfg}
			if tc.mutate != nil {
				tc.mutate(p)
			}
			p.setDefaults()
			err := p.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate: %v; want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func ptr(s string) *string { return &s }

// TestAssertionKeyFiles: PKCS#8 and SEC 1 P-256 keys load; the first signs,
// all are published under their RFC 7638 thumbprints; other keys are
// refused with a reason.
func TestAssertionKeyFiles(t *testing.T) {
	pkcs8, k1 := writeKeyFile(t, false)
	sec1, k2 := writeKeyFile(t, true)
	t.Setenv("PKCE_TEST_KEY_FILE", sec1)
	keys, err := loadAssertionKeys(caddy.Context{}, caddy.NewReplacer(), []string{pkcs8, "{env.PKCE_TEST_KEY_FILE}"})
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(keys.jwks, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 {
		t.Fatalf("JWKS has %d keys, want 2", len(set.Keys))
	}
	for i, want := range []*ecdsa.PrivateKey{k1, k2} {
		k := set.Keys[i]
		if !k.IsPublic() || k.Algorithm != "ES256" || k.Use != "sig" {
			t.Errorf("key %d: public %v alg %q use %q; want a public ES256 signing key", i, k.IsPublic(), k.Algorithm, k.Use)
		}
		if pub, ok := k.Key.(*ecdsa.PublicKey); !ok || !pub.Equal(&want.PublicKey) {
			t.Errorf("key %d is not the public half of key file %d", i, i)
		}
		if strings.Contains(string(keys.jwks), `"d"`) {
			t.Error("the JWKS contains a private key part")
		}
	}
	if set.Keys[0].KeyID != keys.kid || set.Keys[0].KeyID == set.Keys[1].KeyID {
		t.Errorf("kids %q %q, signing kid %q: want distinct, the first signing", set.Keys[0].KeyID, set.Keys[1].KeyID, keys.kid)
	}
	// RFC 7638 thumbprint: go-jose computes it; check it is the key's own.
	thumb, _ := (&jose.JSONWebKey{Key: &k1.PublicKey}).Thumbprint(cryptoSHA256)
	if set.Keys[0].KeyID != b64url(thumb) {
		t.Errorf("kid %q is not the RFC 7638 thumbprint", set.Keys[0].KeyID)
	}

	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)
	for name, c := range map[string]struct {
		content string
		want    string
	}{
		"not PEM":     {"hello", "no PEM block found"},
		"certificate": {string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})), `PEM block "CERTIFICATE" is not a private key`},
		"RSA key":     {string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsaDER})), "not an ECDSA P-256 key"},
		"P-384 key":   {string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p384DER})), "not an ECDSA P-256 key"},
	} {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "k.pem")
			if err := os.WriteFile(f, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := loadAssertionKeys(caddy.Context{}, caddy.NewReplacer(), []string{f})
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "key_files[0]") {
				t.Errorf("error %v; want one naming key_files[0] and containing %q", err, c.want)
			}
		})
	}
	if _, err := loadAssertionKeys(caddy.Context{}, caddy.NewReplacer(), []string{pkcs8, pkcs8}); err == nil || !strings.Contains(err.Error(), "same key") {
		t.Errorf("the same key twice: %v; want an error", err)
	}
	if _, err := loadAssertionKeys(caddy.Context{}, caddy.NewReplacer(), []string{filepath.Join(t.TempDir(), "missing.pem")}); err == nil || !strings.Contains(err.Error(), "key_files[0]") {
		t.Errorf("a missing file: %v; want an error naming key_files[0]", err)
	}
}

const cryptoSHA256 = crypto.SHA256

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// TestAssertionPerRoute: one session (a named provider's) used on routes
// with different assertion settings gets each route's own assertion, and
// going back and forth between them signs nothing again.
func TestAssertionPerRoute(t *testing.T) {
	pa, keyA := newAssertionHandler(t, AssertionConfig{Audience: "https://a.internal", Issuer: "https://login.example"})
	pb, keyB := newAssertionHandler(t, AssertionConfig{Audience: "https://b.internal", Issuer: "https://login.example"})
	s := testSession(t)
	get := func(p *PKCEAuth) string {
		r := httptest.NewRequest(http.MethodGet, "http://site.test/", nil)
		if err := p.setAssertion(r, s); err != nil {
			t.Fatal(err)
		}
		return r.Header.Get("X-Identity-Assertion")
	}
	a1, b1 := get(pa), get(pb)
	if _, c := parseAssertion(t, a1, &keyA.PublicKey); c["aud"] != "https://a.internal" {
		t.Errorf("route a got aud %v", c["aud"])
	}
	if _, c := parseAssertion(t, b1, &keyB.PublicKey); c["aud"] != "https://b.internal" {
		t.Errorf("route b got aud %v", c["aud"])
	}
	for range 3 {
		if get(pa) != a1 || get(pb) != b1 {
			t.Fatal("alternating routes signed new assertions instead of reusing each route's")
		}
	}
}

// TestAssertionNamesTheProvider: users of two named providers with the
// same sub get assertions the upstream can tell apart (the provider
// claim), and `provider` can be chosen as a claim or mapped to a header.
func TestAssertionNamesTheProvider(t *testing.T) {
	a := &assertionSigner{audience: "https://app.internal", claims: []string{"provider", "email"}, lifetime: 60}
	corp := &PKCEAuth{providerName: "corp", stdClaims: []string{"email", "sub"}}
	social := &PKCEAuth{providerName: "social", stdClaims: []string{"email", "sub"}}
	s := &session{Subject: "1001", UserID: "1001", Email: "ceo@corp.example", Expires: 1 << 40}
	cv := a.claimSet(corp.activate(s), "https://app.example", 100, 160)
	cs := a.claimSet(social.activate(s), "https://app.example", 100, 160)
	if cv["provider"] != "corp" || cs["provider"] != "social" {
		t.Errorf("provider claims %v / %v, want corp / social", cv["provider"], cs["provider"])
	}
	if got := corp.activate(s).claim("provider"); got != "corp" {
		t.Errorf("claim(provider) = %q, want corp (for header mappings)", got)
	}
	inline := (&PKCEAuth{stdClaims: []string{"email", "sub"}}).activate(s)
	if _, ok := a.claimSet(inline, "https://app.example", 100, 160)["provider"]; ok {
		t.Error("an inline handler's assertion has a provider claim")
	}
}
