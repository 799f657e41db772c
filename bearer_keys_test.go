package pkceauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/zap"
)

// jwksServer publishes keys and counts fetches; down makes it answer 503.
type jwksServer struct {
	*httptest.Server
	keys    atomic.Pointer[jose.JSONWebKeySet]
	fetches atomic.Int32
	down    atomic.Bool
}

func newJWKSServer(t *testing.T) *jwksServer {
	s := &jwksServer{}
	s.keys.Store(&jose.JSONWebKeySet{})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(s.keys.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

// testSigner is an ES256 key with its kid.
type testSigner struct {
	kid  string
	priv *ecdsa.PrivateKey
}

func newTestSigner(t *testing.T, kid string) *testSigner {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testSigner{kid: kid, priv: priv}
}

func (s *testSigner) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: &s.priv.PublicKey, KeyID: s.kid, Algorithm: "ES256", Use: "sig"}
}

// token signs claims and parses the result as checkBearer does.
func (s *testSigner) token(t *testing.T, kid string) (*jwt.JSONWebToken, jose.Header) {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: s.priv, KeyID: kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(sig).Claims(map[string]any{"sub": "x"}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	return tok, tok.Headers[0]
}

func TestBearerKeys(t *testing.T) {
	srv := newJWKSServer(t)
	a, b := newTestSigner(t, "a"), newTestSigner(t, "b")
	srv.keys.Store(&jose.JSONWebKeySet{Keys: []jose.JSONWebKey{a.public()}})
	keys := newBearerKeys(&http.Client{Timeout: 5 * time.Second}, zap.NewNop())
	ctx := context.Background()
	verify := func(s *testSigner, kid string) error {
		tok, h := s.token(t, kid)
		var c map[string]any
		return keys.verify(ctx, srv.URL, tok, h, &c)
	}

	if err := verify(a, "a"); err != nil {
		t.Fatalf("token of the published key: %v", err)
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
	// A known kid with a signature of another key: refused, no fetch.
	if err := verify(b, "a"); err == nil {
		t.Fatal("accepted a signature by another key under a known kid")
	}
	// Unknown kids right after a fetch: refused without a fetch.
	for range 3 {
		if err := verify(b, "b"); !errors.Is(err, errUnknownKey) {
			t.Fatalf("unknown kid: %v, want errUnknownKey", err)
		}
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Errorf("forged tokens caused %d fetches, want none beyond the first", n-1)
	}

	// A rotation: after the interval, the new kid fetches once.
	srv.keys.Store(&jose.JSONWebKeySet{Keys: []jose.JSONWebKey{a.public(), b.public()}})
	keys.mu.Lock()
	keys.lastFetch = time.Now().Add(-jwksRefetchInterval)
	keys.mu.Unlock()
	if err := verify(b, "b"); err != nil {
		t.Fatalf("token of a newly published key: %v", err)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}

	// A stale set is refreshed: a withdrawn key stops working.
	srv.keys.Store(&jose.JSONWebKeySet{Keys: []jose.JSONWebKey{b.public()}})
	age := func() {
		set := *keys.set.Load()
		set.fetched = time.Now().Add(-jwksMaxAge - time.Minute)
		keys.set.Store(&set)
		keys.mu.Lock()
		keys.lastFetch = set.fetched
		keys.mu.Unlock()
	}
	age()
	if err := verify(a, "a"); err == nil {
		t.Error("the withdrawn key is still trusted after the set went stale")
	}
	// If the provider is down then, the old set stays in use.
	age()
	srv.down.Store(true)
	if err := verify(b, "b"); err != nil {
		t.Errorf("stale set with the provider down: %v, want the old keys used", err)
	}

	// Without any set and the provider down: unavailable, not invalid.
	fresh := newBearerKeys(&http.Client{Timeout: 5 * time.Second}, zap.NewNop())
	tok, h := a.token(t, "a")
	var c map[string]any
	if err := fresh.verify(ctx, srv.URL, tok, h, &c); !errors.Is(err, errProviderUnavailable) {
		t.Errorf("no keys, provider down: %v, want errProviderUnavailable", err)
	}
}

// TestBearerKeysSkipsUnusable: keys that are not for signatures, of
// another algorithm, or private are never used.
func TestBearerKeysSkipsUnusable(t *testing.T) {
	srv := newJWKSServer(t)
	a := newTestSigner(t, "a")
	enc := a.public()
	enc.Use = "enc"
	srv.keys.Store(&jose.JSONWebKeySet{Keys: []jose.JSONWebKey{enc}})
	keys := newBearerKeys(&http.Client{Timeout: 5 * time.Second}, zap.NewNop())
	tok, h := a.token(t, "a")
	var c map[string]any
	if err := keys.verify(context.Background(), srv.URL, tok, h, &c); err == nil {
		t.Error("verified with an encryption key")
	}
	otherAlg := a.public()
	otherAlg.Algorithm = "ES384"
	keys = newBearerKeys(&http.Client{Timeout: 5 * time.Second}, zap.NewNop())
	srv.keys.Store(&jose.JSONWebKeySet{Keys: []jose.JSONWebKey{otherAlg}})
	if err := keys.verify(context.Background(), srv.URL, tok, h, &c); err == nil {
		t.Error("verified with a key published for another algorithm")
	}
}
