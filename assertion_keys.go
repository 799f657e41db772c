package pkceauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/caddyserver/caddy/v2"
	"github.com/go-jose/go-jose/v4"

	"github.com/caddy-pkce/caddy-pkce/internal/errpage"
)

// assertionKeyName is where the generated assertion key lives in Caddy's
// storage, as a PEM file that key_files would also accept.
const assertionKeyName = "pkce_auth/assertion_key.pem"

// jwksCacheControl is how long clients may cache the JWK Set. A new key must be
// published this long before it signs (see AssertionConfig.KeyFiles).
const jwksCacheControl = "public, max-age=300"

// assertionKeys are the signing key and the published key set.
type assertionKeys struct {
	signer jose.Signer
	kid    string // of the signing key
	jwks   []byte // the JWK Set document: public keys only
}

// loadAssertionKeys reads the key files (placeholders resolved), or the
// key kept in Caddy's storage, generating it on first use.
func loadAssertionKeys(ctx caddy.Context, repl *caddy.Replacer, files []string) (*assertionKeys, error) {
	var keys []*ecdsa.PrivateKey
	for i, f := range files {
		f = repl.ReplaceKnown(f, "")
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("key_files[%d]: %v", i, err)
		}
		key, err := parseAssertionKey(raw)
		if err != nil {
			return nil, fmt.Errorf("key_files[%d] %s: %v", i, f, err)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		key, err := storedSecret(ctx, assertionKeyName, newAssertionKeyPEM, func(raw []byte) (*ecdsa.PrivateKey, error) {
			key, err := parseAssertionKey(raw)
			if err != nil {
				return nil, fmt.Errorf("stored assertion key %s is unusable (%v); delete it to generate a new one (upstreams must then fetch the new JWKS)", assertionKeyName, err)
			}
			return key, nil
		})
		if err != nil {
			return nil, fmt.Errorf("no key_files configured and the key in Caddy's storage could not be loaded or created: %v", err)
		}
		keys = append(keys, key)
	}
	return newAssertionKeys(keys)
}

// newAssertionKeys makes the signer of keys[0] and the JWK Set of all.
// Key ids are RFC 7638 thumbprints, so every instance with the same key
// names it the same without storing anything more.
func newAssertionKeys(keys []*ecdsa.PrivateKey) (*assertionKeys, error) {
	set := jose.JSONWebKeySet{}
	for i, key := range keys {
		pub := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(assertionAlg), Use: "sig"}
		thumb, err := pub.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("key %d: %v", i, err)
		}
		pub.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
		for _, k := range set.Keys {
			if k.KeyID == pub.KeyID {
				return nil, fmt.Errorf("key_files[%d] is the same key as an earlier one", i)
			}
		}
		set.Keys = append(set.Keys, pub)
	}
	kid := set.Keys[0].KeyID
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: assertionAlg, Key: jose.JSONWebKey{Key: keys[0], KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, err
	}
	doc, err := json.Marshal(set)
	if err != nil {
		return nil, err
	}
	return &assertionKeys{signer: signer, kid: kid, jwks: doc}, nil
}

// parseAssertionKey reads a PEM ECDSA P-256 private key, PKCS#8 or SEC 1.
func parseAssertionKey(raw []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, errors.New("no PEM block found; want an ECDSA P-256 private key (openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256)")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, err
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, errors.New("not an ECDSA P-256 key (ES256 needs one)")
	}
	return ec, nil
}

// newAssertionKeyPEM generates a P-256 key in PKCS#8 PEM.
func newAssertionKeyPEM() []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err) // a freshly generated P-256 key always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// serveJWKS answers the public keys. It needs no session: they are public,
// and the upstream fetches them without one.
func (p *PKCEAuth) serveJWKS(w http.ResponseWriter, r *http.Request) error {
	if !allowGetHead(w, r) {
		return nil
	}
	h := w.Header()
	h.Set("Content-Type", "application/jwk-set+json")
	h.Set("Cache-Control", jwksCacheControl)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(p.assertion.keys.jwks)
	}
	return nil
}

// allowGetHead answers 405 (JSON) to methods other than GET and HEAD and
// reports whether the request may go on.
func allowGetHead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	errpage.JSON(w, http.StatusMethodNotAllowed, "Method not allowed", "Only GET and HEAD are allowed here.")
	return false
}
