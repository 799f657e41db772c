package testop

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"hash"
	"strings"
	"time"
)

// Types (JWS typ header) of the tokens this provider signs.
const (
	idTokenType     = "JWT"
	accessTokenType = "at+jwt" // RFC 9068
)

// otherClient is the audience and azp that the audience misbehaviours use.
const otherClient = "other-client"

// idTokenClaims are the claims of a valid ID token for u. Callers hold p.mu
// or pass data they read under it.
func (p *Provider) idTokenClaims(u User, nonce, sid string, authTime, now time.Time, thin bool) map[string]any {
	c := map[string]any{}
	if !thin {
		c = u.claims()
	}
	c["iss"] = p.issuer
	c["sub"] = u.Subject
	c["aud"] = p.cfg.ClientID
	c["azp"] = p.cfg.ClientID
	c["iat"] = now.Unix()
	c["exp"] = now.Add(p.cfg.IDTokenTTL).Unix()
	c["auth_time"] = authTime.Unix()
	c["sid"] = sid
	if nonce != "" {
		c["nonce"] = nonce
	}
	return c
}

// IDTokenClaims returns the claims of a valid ID token for the current user,
// issued now with the given nonce ("" leaves nonce out), so a test can change
// one claim and sign the result with SignIDToken.
func (p *Provider) IDTokenClaims(nonce string) map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.Now()
	return p.idTokenClaims(p.users[p.current], nonce, randomToken(), now, now, false)
}

// SignIDToken signs claims exactly as given with the current key (typ JWT,
// kid of the key), ignoring Misbehave. It is for tests that craft tokens.
func (p *Provider) SignIDToken(claims map[string]any) string {
	p.t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		p.t.Fatalf("testop: SignIDToken: %v", err)
	}
	p.mu.Lock()
	tok, err := p.keys.current.sign(payload, idTokenType)
	p.mu.Unlock()
	if err != nil {
		p.t.Fatalf("testop: SignIDToken: %v", err)
	}
	return tok
}

// misbehaveClaims applies the ID token claim switches of m to c.
func (p *Provider) misbehaveClaims(c map[string]any, m Misbehaviour, now time.Time) {
	if m.WrongNonce {
		n, _ := c["nonce"].(string)
		c["nonce"] = "wrong-" + n
	}
	if m.WrongIssuer {
		c["iss"] = "https://wrong-issuer.invalid"
	}
	if m.WrongAudience {
		c["aud"] = otherClient
	}
	if m.ExtraAudienceNoAzp {
		c["aud"] = []string{p.cfg.ClientID, otherClient}
		delete(c, "azp")
	}
	if m.WrongAzp {
		c["aud"] = []string{p.cfg.ClientID, otherClient}
		c["azp"] = otherClient
	}
	if m.Expired {
		exp := now.Add(-10 * time.Minute)
		c["exp"] = exp.Unix()
		c["iat"] = exp.Add(-p.cfg.IDTokenTTL).Unix()
		c["auth_time"] = exp.Add(-p.cfg.IDTokenTTL).Unix()
	}
	if m.WeakACR {
		c["acr"] = "weak"
	}
	if m.OldAuthTime {
		c["auth_time"] = now.Add(-time.Hour).Unix()
	}
	if m.OmitAuthTime {
		delete(c, "auth_time")
	}
	if m.IssuedInFuture {
		iat := now.Add(10 * time.Minute)
		c["iat"] = iat.Unix()
		c["exp"] = iat.Add(p.cfg.IDTokenTTL).Unix()
	}
}

// signIDTokenLocked signs an ID token applying the signature switches of m.
// The caller holds p.mu.
func (p *Provider) signIDTokenLocked(claims map[string]any, m Misbehaviour) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	var tok string
	switch {
	case m.AlgNone:
		tok = jwtWithoutKey(`{"alg":"none","typ":"JWT"}`, payload, nil)
	case m.SignHS256:
		tok = jwtWithoutKey(`{"alg":"HS256","typ":"JWT"}`, payload, []byte(p.cfg.ClientSecret))
	case m.UnknownKid:
		k, err := p.keys.rogueKey()
		if err != nil {
			return "", err
		}
		tok, err = k.sign(payload, idTokenType)
		if err != nil {
			return "", err
		}
	default:
		tok, err = p.keys.current.sign(payload, idTokenType)
		if err != nil {
			return "", err
		}
	}
	if m.BadSignature {
		tok = corruptSignature(tok)
	}
	return tok, nil
}

// accessTokenClaims are the claims of an RFC 9068 access token for g.
func (p *Provider) accessTokenClaims(g *grant, jti string, now time.Time) map[string]any {
	return map[string]any{
		"iss":       p.issuer,
		"sub":       g.subject,
		"aud":       g.clientID,
		"client_id": g.clientID,
		"scope":     g.scope,
		"sid":       g.sid,
		"jti":       jti,
		"iat":       now.Unix(),
		"exp":       now.Add(p.cfg.AccessTokenTTL).Unix(),
	}
}

// atHash is the OIDC at_hash of an access token: the left half of its hash
// with the hash function of the signing algorithm (SHA-512 for EdDSA, as
// go-oidc does).
func atHash(alg, accessToken string) string {
	var h hash.Hash = sha256.New()
	if alg == "EdDSA" {
		h = sha512.New()
	}
	h.Write([]byte(accessToken))
	sum := h.Sum(nil)
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}

// jwtWithoutKey builds a compact JWS from a literal header: unsigned when
// hmacKey is nil, else HMAC-SHA256. go-jose refuses both (alg none, and HMAC
// keys shorter than 32 bytes), hence by hand.
func jwtWithoutKey(header string, payload, hmacKey []byte) string {
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString(payload)
	if hmacKey == nil {
		return input + "."
	}
	mac := hmac.New(sha256.New, hmacKey)
	mac.Write([]byte(input))
	return input + "." + enc.EncodeToString(mac.Sum(nil))
}

// corruptSignature flips bits in the signature of a compact JWS, keeping it
// well-formed so that only signature verification can catch it.
func corruptSignature(tok string) string {
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil || len(sig) == 0 {
		return tok
	}
	sig[0] ^= 0xff
	sig[len(sig)/2] ^= 0xff
	return tok[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}

// signAccessTokenLocked signs an access token with the current key. The
// caller holds p.mu.
func (p *Provider) signAccessTokenLocked(claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	return p.keys.current.sign(payload, accessTokenType)
}
