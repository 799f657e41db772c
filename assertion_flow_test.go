package pkceauth

import (
	"context"
	"crypto"
	"encoding/json"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"

	"github.com/caddy-pkce/caddy-pkce/internal/testop"
)

// assertionEcho is an upstream that shows the assertion it received and a
// look-alike header a CGI or PHP upstream would read as the same.
var assertionEcho = []any{map[string]any{
	"handler":     "static_response",
	"status_code": 200,
	"body": strings.Join([]string{
		"id={http.auth.user.id}",
		"assertion={http.request.header.X-Identity-Assertion}",
		"lookalike={http.request.header.X_Identity_Assertion}",
	}, "\n"),
}}

// assertionVerifier verifies assertions as an upstream would with go-oidc:
// signature against the JWK Set fetched from the site, iss, aud, exp (on
// the module's test clock), ES256 only.
func assertionVerifier(s *site, iss, aud, jwksPath string) *oidc.IDTokenVerifier {
	keys := oidc.NewRemoteKeySet(context.Background(), s.base+jwksPath)
	return oidc.NewVerifier(iss, keys, &oidc.Config{ClientID: aud, SupportedSigningAlgs: []string{"ES256"}, Now: testClock})
}

// TestAssertionUpstream: the upstream receives an assertion that verifies
// against the JWKS the site publishes, carries the session's identity, is
// never the client's, is reused while fresh, renewed when due, and changes
// with the user.
func TestAssertionUpstream(t *testing.T) {
	op := newTestOP(t, testop.Config{})
	op.SetUser(testop.User{Subject: "alice-sub", Email: "alice@example.com", EmailVerified: true, Groups: []string{"staff"},
		Extra: map[string]any{"department": "ops"}})
	const aud = "https://app.internal"
	s := startSite(t, op, siteOptions{
		auth: map[string]any{"assertion": map[string]any{
			"audience": aud, "claims": []string{"email", "email_verified", "groups", "department"},
		}},
		next: assertionEcho,
	})
	verifier := assertionVerifier(s, s.base, aud, "/oauth2/jwks")
	ctx := context.Background()

	// The JWKS is public, cacheable, and GET/HEAD only.
	b := newBrowser(t, s)
	jwks := b.fetch(s.base + "/oauth2/jwks")
	expectStatus(t, jwks, http.StatusOK)
	if ct := jwks.Header.Get("Content-Type"); ct != "application/jwk-set+json" {
		t.Errorf("JWKS Content-Type %q", ct)
	}
	if cc := jwks.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=300") {
		t.Errorf("JWKS Cache-Control %q, want a max-age", cc)
	}
	expectNoSetCookie(t, jwks)
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal([]byte(jwks.Body), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS %q: want one key (%v)", jwks.Body, err)
	}
	if k := set.Keys[0]; k["kty"] != "EC" || k["crv"] != "P-256" || k["alg"] != "ES256" || k["kid"] == "" || k["d"] != nil {
		t.Errorf("JWKS key %v: want a public EC P-256 ES256 key with a kid", k)
	}
	expectStatus(t, b.do(http.MethodPost, s.base+"/oauth2/jwks", fetchHeaders, nil), http.StatusMethodNotAllowed)
	if head := b.do(http.MethodHead, s.base+"/oauth2/jwks", fetchHeaders, nil); head.Status != http.StatusOK || head.Body != "" {
		t.Errorf("HEAD JWKS: %s", head)
	}
	// The generated key is kept in the configured storage.
	if _, err := os.Stat(filepath.Join(s.opts.storage, "pkce_auth", "assertion_key.pem")); err != nil {
		t.Errorf("no generated assertion key in storage: %v", err)
	}

	s.login(t, b, "/")
	forged := withHeaders(fetchHeaders, "X-Identity-Assertion", "forged", "X_Identity_Assertion", "forged-lookalike")
	r := b.do(http.MethodGet, s.base+"/api", forged, nil)
	expectStatus(t, r, http.StatusOK)
	f := r.Fields()
	if f["lookalike"] != "" {
		t.Errorf("the client's X_Identity_Assertion reached the upstream: %q", f["lookalike"])
	}
	raw := f["assertion"]
	idt, err := verifier.Verify(ctx, raw)
	if err != nil {
		t.Fatalf("upstream's assertion %q does not verify against the JWKS: %v", raw, err)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"iss": s.base, "sub": "alice-sub", "aud": aud, "email": "alice@example.com",
		"email_verified": true, "groups": []any{"staff"}, "department": "ops",
	} {
		if !reflect.DeepEqual(claims[k], want) {
			t.Errorf("assertion %s = %#v, want %#v", k, claims[k], want)
		}
	}
	iat, _ := claims["iat"].(float64)
	exp, _ := claims["exp"].(float64)
	if nbf, _ := claims["nbf"].(float64); exp-iat != 60 || nbf != iat || claims["jti"] == "" {
		t.Errorf("iat %v nbf %v exp %v jti %v: want a 60s lifetime from iat, nbf = iat, a jti", iat, claims["nbf"], exp, claims["jti"])
	}
	for _, k := range []string{"nonce", "at_hash", "sid", "name"} {
		if _, ok := claims[k]; ok {
			t.Errorf("assertion has claim %s, which was not asked for", k)
		}
	}

	// Another audience's verifier refuses it.
	if _, err := assertionVerifier(s, s.base, "https://other.internal", "/oauth2/jwks").Verify(ctx, raw); err == nil {
		t.Error("an assertion for https://app.internal verified for another audience")
	}

	// Reused while fresh (no signing per request), renewed when due.
	if again := b.fetch(s.base + "/api").Fields()["assertion"]; again != raw {
		t.Error("assertion minted again right away; want it reused")
	}
	advanceClock(t, 31*time.Second)
	renewed := b.fetch(s.base + "/api").Fields()["assertion"]
	if renewed == raw {
		t.Fatal("assertion not renewed after half its lifetime")
	}
	if _, err := verifier.Verify(ctx, renewed); err != nil {
		t.Errorf("renewed assertion does not verify: %v", err)
	}
	advanceClock(t, 60*time.Second)
	if _, err := verifier.Verify(ctx, raw); err == nil {
		t.Error("the first assertion still verifies after its exp")
	}
	late := b.fetch(s.base + "/api").Fields()["assertion"]
	if late == renewed {
		t.Fatal("an expired cached assertion was passed on")
	}
	if _, err := verifier.Verify(ctx, late); err != nil {
		t.Errorf("assertion minted after the cached one expired does not verify: %v", err)
	}

	// Another user logs in: the assertion names them.
	op.SetUser(testop.User{Subject: "bob-sub", Email: "bob@example.com"})
	b2 := newBrowser(t, s)
	s.login(t, b2, "/")
	bobRaw := b2.fetch(s.base + "/api").Fields()["assertion"]
	bob, err := verifier.Verify(ctx, bobRaw)
	if err != nil {
		t.Fatalf("bob's assertion: %v", err)
	}
	var bobClaims map[string]any
	_ = bob.Claims(&bobClaims)
	if bob.Subject != "bob-sub" || bobClaims["email"] != "bob@example.com" || bobClaims["department"] != nil || bobClaims["groups"] != nil {
		t.Errorf("bob's assertion claims %v: want bob-sub with bob's email and without alice's claims", bobClaims)
	}
	if alice := b.fetch(s.base + "/api").Fields()["assertion"]; alice != late {
		t.Error("alice's assertion changed when bob logged in")
	}

	// In alice's browser: logout, then bob logs in there.
	expectStatus(t, b.navigate(s.base+"/oauth2/logout", "Sec-Fetch-Site", "same-origin"), http.StatusSeeOther)
	s.login(t, b, "/")
	again, err := verifier.Verify(ctx, b.fetch(s.base + "/api").Fields()["assertion"])
	if err != nil || again.Subject != "bob-sub" {
		t.Errorf("after bob logged in in alice's browser: %v, %v; want bob's assertion", again, err)
	}

	// Without a session nothing reaches the upstream.
	r = newBrowser(t, s).do(http.MethodGet, s.base+"/api", forged, nil)
	expectStatus(t, r, http.StatusUnauthorized)
}

// TestAssertionOptions: a configured header, issuer, audience and JWKS
// path, and a key from a file that the upstream can verify with the
// public key alone.
func TestAssertionOptions(t *testing.T) {
	op := newTestOP(t, testop.Config{})
	file, key := writeKeyFile(t, true)
	const aud = "urn:example:orders"
	s := startSite(t, op, siteOptions{
		auth: map[string]any{
			"assertion": map[string]any{
				"header": "X-Upstream-Identity", "audience": aud, "issuer": "https://login.example",
				"lifetime": "5m", "key_files": []string{file}, "jwks_path": "/.well-known/jwks.json",
			},
		},
		next: []any{map[string]any{
			"handler": "static_response",
			"body":    "assertion={http.request.header.X-Upstream-Identity}\ndefault={http.request.header.X-Identity-Assertion}",
		}},
	})
	b := newBrowser(t, s)
	s.login(t, b, "/")
	f := b.fetch(s.base + "/api").Fields()
	if f["default"] != "" {
		t.Errorf("the default header was set too: %q", f["default"])
	}
	idt, err := assertionVerifier(s, "https://login.example", aud, "/.well-known/jwks.json").Verify(context.Background(), f["assertion"])
	if err != nil {
		t.Fatalf("assertion does not verify against the JWKS at the configured path: %v", err)
	}
	if idt.Expiry.Sub(idt.IssuedAt) != 5*time.Minute {
		t.Errorf("lifetime %s, want 5m", idt.Expiry.Sub(idt.IssuedAt))
	}
	// The upstream can verify with the key file's public key alone.
	if _, claims := parseAssertion(t, f["assertion"], &key.PublicKey); claims["sub"] != "alice-sub" {
		t.Errorf("sub %v", claims["sub"])
	}
	// The default path is not served; jwks_path off serves none.
	if r := b.fetch(s.base + "/oauth2/jwks"); strings.Contains(r.Body, `"keys"`) {
		t.Errorf("JWKS served at the default path too: %s", r)
	}
	s.reload(siteOptions{auth: map[string]any{"assertion": map[string]any{
		"audience": aud, "key_files": []string{file}, "jwks_path": "off",
	}}, next: assertionEcho})
	r := b.fetch(s.base + "/oauth2/jwks")
	if strings.Contains(r.Body, `"keys"`) {
		t.Errorf("jwks_path off still serves the keys: %s", r)
	}
	if a := b.fetch(s.base + "/api").Fields()["assertion"]; a == "" {
		t.Error("jwks_path off stopped the assertion")
	}
}

// TestAssertionSharedKey: two instances sharing Caddy's file storage
// generate one key between them: they publish the same JWKS and each one's
// assertion verifies against the other's.
func TestAssertionSharedKey(t *testing.T) {
	op := newTestOP(t, testop.Config{})
	// The cluster's upstream shows the X-Access-Token header: here the
	// assertion's (pass_access_token uses Authorization).
	c := newTestCluster(t, op, clusterSpec{store: storeCookie, configure: func(p *PKCEAuth) {
		p.Assertion = &AssertionConfig{Header: "X-Access-Token", Audience: "https://app.internal", Issuer: "https://app.example"}
	}}, 2)
	b := c.browser()
	jwksA := b.request("A", asXHR, "/oauth2/jwks", nil)
	jwksB := b.request("B", asXHR, "/oauth2/jwks", nil)
	expectStatusCode(t, jwksA, http.StatusOK, "JWKS on A")
	if jwksA.body != jwksB.body || !strings.Contains(jwksA.body, `"kid"`) {
		t.Fatalf("A and B publish different keys:\n%s\n%s", jwksA.body, jwksB.body)
	}
	b.login("A")
	for _, pair := range [][2]string{{"A", "B"}, {"B", "A"}} {
		signer, publisher := c.node(pair[0]), c.node(pair[1])
		raw := b.get(signer.name).field("x-access-token")
		var set struct{ Keys []json.RawMessage }
		_ = json.Unmarshal([]byte(b.request(publisher.name, asXHR, "/oauth2/jwks", nil).body), &set)
		keySet := &oidc.StaticKeySet{}
		for _, k := range set.Keys {
			pub, err := parseJWK(k)
			if err != nil {
				t.Fatal(err)
			}
			keySet.PublicKeys = append(keySet.PublicKeys, pub)
		}
		v := oidc.NewVerifier("https://app.example", keySet, &oidc.Config{ClientID: "https://app.internal", SupportedSigningAlgs: []string{"ES256"}, Now: testClock})
		if _, err := v.Verify(context.Background(), raw); err != nil {
			t.Errorf("assertion made on %s does not verify with %s's JWKS: %v", signer.name, publisher.name, err)
		}
	}
}

// parseJWK reads one public key of a JWK Set.
func parseJWK(raw []byte) (crypto.PublicKey, error) {
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(raw); err != nil {
		return nil, err
	}
	return k.Key, nil
}

// TestAssertionBadConfigRefusedByCaddy: Caddy refuses a bad assertion
// block with the field named, whether Validate or Provision finds it.
func TestAssertionBadConfigRefusedByCaddy(t *testing.T) {
	good, _ := writeKeyFile(t, false)
	notAKey := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(notAKey, []byte("-----BEGIN CERTIFICATE-----\nAQ==\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		assertion map[string]any
		want      string
	}{
		"no audience":     {map[string]any{"key_files": []string{good}}, "assertion: audience is required"},
		"reserved claim":  {map[string]any{"audience": "a", "claims": []string{"sub"}, "key_files": []string{good}}, "claims: sub is set by the module itself"},
		"not a key":       {map[string]any{"audience": "a", "key_files": []string{notAKey}}, "key_files[0]"},
		"missing key":     {map[string]any{"audience": "a", "key_files": []string{notAKey + ".missing"}}, "key_files[0]"},
		"unknown field":   {map[string]any{"audience": "a", "key_file": good}, "key_file"},
		"bad header name": {map[string]any{"audience": "a", "header": "X Y", "key_files": []string{good}}, "not a valid header name"},
	} {
		t.Run(name, func(t *testing.T) {
			auth := map[string]any{"handler": "pkce_auth", "issuer": "https://idp.example", "client_id": "app",
				"session_keys": []string{testKeyA}, "assertion": c.assertion}
			cfg := map[string]any{"apps": map[string]any{"http": map[string]any{"servers": map[string]any{"srv0": map[string]any{
				"listen":          []string{"127.0.0.1:" + strconv.Itoa(pickFreePort(t))},
				"routes":          []any{map[string]any{"handle": []any{auth}}},
				"automatic_https": map[string]any{"disable": true},
			}}}}}
			msg := loadCaddyError(t, cfg)
			if msg == "" || !strings.Contains(msg, c.want) {
				t.Errorf("load error %q; want one containing %q", msg, c.want)
			}
		})
	}
}

// TestAssertionServerStoreCache: with a server-side store, reading the
// session again after cache_ttl keeps the assertion; it is renewed only
// when due, and a logout ends it.
func TestAssertionServerStoreCache(t *testing.T) {
	op := newTestOP(t, testop.Config{})
	c := newTestCluster(t, op, clusterSpec{store: storeCaddyStorage, configure: func(p *PKCEAuth) {
		p.Assertion = &AssertionConfig{Header: "X-Access-Token", Audience: "https://app.internal"} // shown by the cluster's upstream
	}}, 1)
	b := c.browser()
	b.login("A")
	first := b.get("A").field("x-access-token")
	if first == "" {
		t.Fatal("no assertion")
	}
	advanceClock(t, defaultStoreCacheTTL+time.Second) // the record is read again
	if again := b.get("A").field("x-access-token"); again != first {
		t.Error("reading the session record again minted a new assertion")
	}
	advanceClock(t, 30*time.Second)
	if renewed := b.get("A").field("x-access-token"); renewed == first || renewed == "" {
		t.Errorf("assertion not renewed when due: %q", renewed)
	}
	cookie := b.session()
	b.request("A", asNavigation, defaultLogoutPath, nil)
	expectStatusCode(t, b.request("A", asXHR, "/app", cookie), http.StatusUnauthorized, "after logout")
}

// TestAssertionNeverFromClient: the upstream never gets a client's own
// assertion, whether the request is signed in by a bearer token or passes
// anonymously (pass_unauthenticated); a bearer request gets the module's.
// With bearer `only`, the JWK Set is still served and tokens still get
// assertions.
func TestAssertionNeverFromClient(t *testing.T) {
	op := newTestOP(t, testop.Config{})
	for _, c := range []struct {
		name   string
		auth   map[string]any
		token  bool
		signed bool
	}{
		{"bearer", map[string]any{"bearer": map[string]any{"audiences": []string{testAPIAudience}}}, true, true},
		{"bearer only", map[string]any{"bearer": map[string]any{"audiences": []string{testAPIAudience}, "only": true}}, true, true},
		{"anonymous", map[string]any{"pass_unauthenticated": true}, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			auth := map[string]any{"assertion": map[string]any{"audience": "https://app.internal"}}
			maps.Copy(auth, c.auth)
			s := startSite(t, op, siteOptions{auth: auth, next: assertionEcho})
			b := newBrowser(t, s)
			h := fetchHeaders.Clone()
			if c.token {
				h.Set("Authorization", "Bearer "+apiToken(op, nil))
			}
			h.Set("X-Identity-Assertion", "forged.by.client")
			r := b.do(http.MethodGet, s.base+"/", h, nil)
			expectStatus(t, r, http.StatusOK)
			if strings.Contains(r.Body, "forged") {
				t.Errorf("the client's assertion reached the upstream: %s", r.Body)
			}
			if got := strings.Contains(r.Body, "assertion=ey"); got != c.signed {
				t.Errorf("upstream got the module's assertion: %v, want %v (%s)", got, c.signed, r.Body)
			}
			if j := b.fetch(s.base + "/oauth2/jwks"); j.Status != http.StatusOK {
				t.Errorf("JWK Set: %s; want 200", j)
			}
		})
	}
}
