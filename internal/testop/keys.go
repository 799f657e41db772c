package testop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/go-jose/go-jose/v4"
)

// signingKey is one asymmetric key with its kid and JWS algorithm.
type signingKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

// newSigningKey makes the n-th key (counting from 0) of a provider, with a
// fresh kid.
func newSigningKey(alg string, n int) (*signingKey, error) {
	var (
		priv crypto.Signer
		err  error
	)
	switch jose.SignatureAlgorithm(alg) {
	case jose.RS256, jose.PS256:
		priv, err = sharedRSAKey(n)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("unsupported SigningAlg %q (want RS256, PS256, ES256 or EdDSA)", alg)
	}
	if err != nil {
		return nil, err
	}
	return &signingKey{kid: randomKid(), alg: jose.SignatureAlgorithm(alg), priv: priv}, nil
}

// rsaKeys are shared by the providers of a test binary: a provider's n-th
// RSA key is keys[n]. Making a 2048-bit key can take most of a second under
// -race; sharing across providers (different issuers, different kids) is
// harmless, and one provider's keys stay distinct from each other.
var rsaKeys struct {
	sync.Mutex
	keys []*rsa.PrivateKey
}

func sharedRSAKey(n int) (*rsa.PrivateKey, error) {
	rsaKeys.Lock()
	defer rsaKeys.Unlock()
	for len(rsaKeys.keys) <= n {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		rsaKeys.keys = append(rsaKeys.keys, k)
	}
	return rsaKeys.keys[n], nil
}

func randomKid() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// public is the key as published in the JWKS.
func (k *signingKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
}

// sign makes a compact JWS over payload with the given typ header (none
// for "").
func (k *signingKey) sign(payload []byte, typ string) (string, error) {
	jwk := jose.JSONWebKey{Key: k.priv, KeyID: k.kid, Algorithm: string(k.alg)}
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts.WithType(jose.ContentType(typ))
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: jwk}, opts)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// keyring holds the published keys: the current signing key and, after a
// rotation, the previous one (a usual rollover window). rogue signs
// UnknownKid tokens and is never published.
type keyring struct {
	current  *signingKey
	previous *signingKey
	rogue    *signingKey
	made     int // keys made so far, for newSigningKey
}

// next reserves the number of the provider's next key.
func (kr *keyring) next() int {
	kr.made++
	return kr.made - 1
}

func (kr *keyring) published() []*signingKey {
	if kr.previous == nil {
		return []*signingKey{kr.current}
	}
	return []*signingKey{kr.current, kr.previous}
}

func (kr *keyring) rogueKey() (*signingKey, error) {
	if kr.rogue == nil {
		k, err := newSigningKey(string(kr.current.alg), kr.next())
		if err != nil {
			return nil, err
		}
		kr.rogue = k
	}
	return kr.rogue, nil
}

// RotateKeys makes a new signing key with a new kid. The JWKS then lists the
// new key and the one it replaced; the key before that is dropped.
func (p *Provider) RotateKeys() {
	p.t.Helper()
	p.mu.Lock()
	n := p.keys.next()
	p.mu.Unlock()
	k, err := newSigningKey(p.cfg.SigningAlg, n)
	if err != nil {
		p.t.Fatalf("testop: RotateKeys: %v", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys.previous, p.keys.current = p.keys.current, k
}

func (p *Provider) jwks() jose.JSONWebKeySet {
	p.mu.Lock()
	defer p.mu.Unlock()
	var set jose.JSONWebKeySet
	for _, k := range p.keys.published() {
		set.Keys = append(set.Keys, k.public())
	}
	return set
}

// verifyOwnJWT checks that raw is a JWS this provider signed with a
// published key and returns its payload and typ header.
func (p *Provider) verifyOwnJWT(raw string) (payload []byte, typ string, err error) {
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(p.cfg.SigningAlg)})
	if err != nil {
		return nil, "", err
	}
	if len(jws.Signatures) != 1 {
		return nil, "", errors.New("want exactly one signature")
	}
	h := jws.Signatures[0].Header
	p.mu.Lock()
	var key *signingKey
	for _, k := range p.keys.published() {
		if k.kid == h.KeyID {
			key = k
		}
	}
	p.mu.Unlock()
	if key == nil {
		return nil, "", fmt.Errorf("unknown kid %q", h.KeyID)
	}
	payload, err = jws.Verify(key.priv.Public())
	if err != nil {
		return nil, "", err
	}
	typ, _ = h.ExtraHeaders[jose.HeaderType].(string)
	return payload, typ, nil
}
