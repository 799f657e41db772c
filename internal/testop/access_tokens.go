package testop

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"time"
)

// Forgery selects how SignToken signs (or fails to sign) a token, for tests
// of a relying party's or resource server's signature checks.
type Forgery int

const (
	// Genuine signs with the current published key.
	Genuine Forgery = iota
	// AlgNone leaves the token unsigned: header alg "none", empty signature.
	AlgNone
	// HS256PublicKey signs with HMAC-SHA256 keyed with the PEM of the
	// current key's public half, under its kid: the algorithm-confusion
	// attack on verifiers that let the token choose the algorithm.
	HS256PublicKey
	// UnknownKey signs with a key that is not in the JWKS, under a kid that
	// is not either.
	UnknownKey
)

// AccessTokenClaims returns the claims of a valid RFC 9068 access token for
// the current user, issued now for audience aud with the space-separated
// scope ("" leaves scope out), carrying the user's claims (email, name,
// groups...) as providers that put profile claims into access tokens do.
// A test changes what it needs and signs the result with SignToken.
func (p *Provider) AccessTokenClaims(aud, scope string) map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.Now()
	c := p.users[p.current].claims()
	c["iss"] = p.issuer
	c["aud"] = aud
	c["client_id"] = p.cfg.ClientID
	c["iat"] = now.Unix()
	c["exp"] = now.Add(p.cfg.AccessTokenTTL).Unix()
	c["jti"] = randomToken()
	if scope != "" {
		c["scope"] = scope
	}
	return c
}

// SignToken signs claims exactly as given with the JWS typ header typ ("at+jwt"
// for an RFC 9068 access token, "JWT" as ID tokens have, "" for none), made
// as f says. It ignores Misbehave.
func (p *Provider) SignToken(claims map[string]any, typ string, f Forgery) string {
	p.t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		p.t.Fatalf("testop: SignToken: %v", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	key := p.keys.current
	switch f {
	case AlgNone:
		return jwtWithoutKey(header(map[string]any{"alg": "none", "typ": typ}), payload, nil)
	case HS256PublicKey:
		der, err := x509.MarshalPKIXPublicKey(key.priv.Public())
		if err != nil {
			p.t.Fatalf("testop: SignToken: %v", err)
		}
		secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		return jwtWithoutKey(header(map[string]any{"alg": "HS256", "typ": typ, "kid": key.kid}), payload, secret)
	case UnknownKey:
		if key, err = p.keys.rogueKey(); err != nil {
			p.t.Fatalf("testop: SignToken: %v", err)
		}
	}
	tok, err := key.sign(payload, typ)
	if err != nil {
		p.t.Fatalf("testop: SignToken: %v", err)
	}
	return tok
}

// header is a JWS protected header without empty values.
func header(h map[string]any) string {
	for k, v := range h {
		if v == "" {
			delete(h, k)
		}
	}
	b, _ := json.Marshal(h)
	return string(b)
}

// AccessTokenTTL is the lifetime of the access tokens the provider issues.
func (p *Provider) AccessTokenTTL() time.Duration { return p.cfg.AccessTokenTTL }
