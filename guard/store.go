package pkceguard

import (
	"context"
	"strings"
	"time"
)

// Store keeps the guard's bindings: pending authorization requests (under
// their redirect target and state) and issued codes. Keys are
// `<kind>:<64 hex digits>` with kind `state` or `code`; values are small
// opaque byte strings. Every value expires after its TTL.
//
// Stores are Caddy modules in the namespace
// `http.handlers.pkce_guard.stores`. Their methods return an error only for
// a technical reason (the store is unreachable), never because a key is
// absent; the guard then fails closed.
type Store interface {
	// Put stores value under key for ttl, replacing any value there.
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) error

	// Add stores value under key for ttl only if key holds no live value,
	// and reports whether it did.
	Add(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error)

	// Take returns the value under key and deletes it, or nil when there
	// is none or it has expired. Of several concurrent Takes of one key at
	// most one gets the value, so a binding is used once.
	Take(ctx context.Context, key string) ([]byte, error)
}

// keyKind returns the kind part of a store key.
func keyKind(key string) string {
	kind, _, _ := strings.Cut(key, ":")
	return kind
}
