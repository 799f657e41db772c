package pkceauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/zap"
)

// bearerKeys holds the provider's public keys (its jwks_uri) for bearer
// tokens. go-oidc's RemoteKeySet, which verifies ID tokens, fetches the key
// set again after every failed verification: fine for ID tokens, which
// arrive from the token endpoint, but on a resource server anyone can send
// tokens, and each forged one would make Caddy call the provider. Here:
//
//   - a token whose kid is in the cached set is checked against that key
//     only; a bad signature is refused without a fetch;
//   - an unknown kid (a key rotation) fetches the set again, at most once
//     per jwksRefetchInterval for all requests together;
//   - a set older than jwksMaxAge is fetched again on the next use, so a
//     key the provider withdrew stops being trusted; if that fetch fails
//     the old set stays in use;
//   - without any set (first use, provider down) the request gets 503.
//
// go-jose parses the keys and checks the signatures.
type bearerKeys struct {
	client *http.Client
	logger *zap.Logger

	set atomic.Pointer[keySet]

	mu        sync.Mutex // serialises fetches
	lastFetch time.Time  // last attempt, successful or not
	lastErr   error
}

// keySet is one fetched JWKS.
type keySet struct {
	keys    []jose.JSONWebKey
	fetched time.Time
}

const (
	jwksMaxAge  = time.Hour
	maxJWKSBody = 1 << 20
)

// jwksRefetchInterval is the least time between two fetches of the key
// set (a variable for tests).
var jwksRefetchInterval = 10 * time.Second

var errUnknownKey = errors.New("no key of the provider matches the token's kid")

func newBearerKeys(client *http.Client, logger *zap.Logger) *bearerKeys {
	return &bearerKeys{client: client, logger: logger}
}

// verify checks tok's signature with the provider's key for header h and,
// if it holds, decodes the claims into dest. Errors wrapping
// errProviderUnavailable mean the keys could not be had at all.
func (k *bearerKeys) verify(ctx context.Context, url string, tok *jwt.JSONWebToken, h jose.Header, dest ...any) error {
	set := k.set.Load()
	switch {
	case set == nil:
		var err error
		if set, err = k.fetch(ctx, url, nil, true); err != nil {
			return err
		}
	case time.Since(set.fetched) > jwksMaxAge:
		// Refresh in passing: when another request is already fetching,
		// use the current keys rather than wait for it.
		set, _ = k.fetch(ctx, url, set, false)
	}
	err := verifyWith(set, tok, h, dest)
	if !errors.Is(err, errUnknownKey) {
		return err
	}
	// A kid not seen yet: the provider may have rotated its keys.
	fresh, ferr := k.fetch(ctx, url, set, true)
	if ferr != nil {
		return ferr
	}
	if fresh == set {
		return err // fetched too recently to try again
	}
	return verifyWith(fresh, tok, h, dest)
}

// verifyWith tries the keys of set that may have signed the token: those
// with its kid (all when it has none), meant for signatures, of a type
// fitting its alg.
func verifyWith(set *keySet, tok *jwt.JSONWebToken, h jose.Header, dest []any) error {
	tried := false
	for i := range set.keys {
		key := &set.keys[i]
		if h.KeyID != "" && key.KeyID != h.KeyID {
			continue
		}
		if key.Use != "" && key.Use != "sig" || key.Algorithm != "" && key.Algorithm != h.Algorithm {
			continue
		}
		tried = true
		if err := tok.Claims(key, dest...); err == nil {
			return nil
		}
	}
	if !tried {
		return errUnknownKey
	}
	return errors.New("signature does not verify")
}

// fetch reads the key set again, unless another request did since seen
// was loaded or the last attempt is too recent; then it returns the
// current set (nil and the last error when there is none). Without wait,
// it returns seen at once when another fetch is under way.
func (k *bearerKeys) fetch(ctx context.Context, url string, seen *keySet, wait bool) (*keySet, error) {
	if wait {
		k.mu.Lock()
	} else if !k.mu.TryLock() {
		return seen, nil
	}
	defer k.mu.Unlock()
	cur := k.set.Load()
	if cur != seen || time.Since(k.lastFetch) < jwksRefetchInterval {
		if cur == nil {
			if k.lastErr == nil {
				k.lastErr = fmt.Errorf("%w: no keys fetched yet", errProviderUnavailable)
			}
			return nil, k.lastErr
		}
		return cur, nil
	}
	k.lastFetch = time.Now()
	keys, err := k.download(ctx, url)
	if err != nil {
		k.lastErr = fmt.Errorf("%w: fetching the provider's keys from %s: %v", errProviderUnavailable, url, err)
		if c := k.logger.Check(zap.WarnLevel, "bearer: fetching the provider's keys failed"); c != nil {
			c.Write(zap.String("jwks_uri", url), zap.Error(err), zap.Bool("keeping_previous_keys", cur != nil))
		}
		if cur != nil {
			return cur, nil
		}
		return nil, k.lastErr
	}
	set := &keySet{keys: keys, fetched: k.lastFetch}
	k.set.Store(set)
	k.lastErr = nil
	return set, nil
}

// download fetches and parses the JWKS. Keys of a type or algorithm
// go-jose does not know are skipped, as RFC 7517 §5 asks, rather than
// failing the whole set.
func (k *bearerKeys) download(ctx context.Context, url string) ([]jose.JSONWebKey, error) {
	if url == "" {
		return nil, errors.New("the provider has no jwks_uri")
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.client.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBody+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBody {
		return nil, fmt.Errorf("key set larger than %d bytes", maxJWKSBody)
	}
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("not a JWK set: %v", err)
	}
	var keys []jose.JSONWebKey
	for _, r := range raw.Keys {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(r); err != nil || !key.Valid() || !key.IsPublic() {
			continue
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, errors.New("the key set has no usable public key")
	}
	return keys, nil
}
