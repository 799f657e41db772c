package pkceauth

import (
	"strings"
	"sync"
)

// tokenCache remembers verified bearer tokens with their identity until
// they expire, so that a client repeating its token costs a map lookup
// instead of a signature check. Only tokens that passed every check are
// put in, and expiry is checked on every hit, so a hit never grants more
// than the token itself. It is bounded in entries and in bytes (tokens
// can be large): when full, expired entries go first, then about a quarter
// at random.
type tokenCache struct {
	mu       sync.RWMutex
	entries  map[string]*activeSession
	size     int // bytes of the tokens held
	limit    int
	maxBytes int
}

// tokenCacheBytesPerEntry sizes the byte budget: cache_size entries of 4 KB
// on average, larger than most access tokens.
const tokenCacheBytesPerEntry = 4 << 10

func newTokenCache(limit int) *tokenCache {
	return &tokenCache{entries: make(map[string]*activeSession), limit: limit, maxBytes: limit * tokenCacheBytesPerEntry}
}

func (c *tokenCache) get(token string) *activeSession {
	c.mu.RLock()
	a := c.entries[token]
	c.mu.RUnlock()
	return a
}

// put keeps a for token; t is the current time (unix seconds).
func (c *tokenCache) put(token string, a *activeSession, t int64) {
	if c.limit <= 0 || len(token) > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[token]; ok {
		return
	}
	if len(c.entries) >= c.limit || c.size+len(token) > c.maxBytes {
		for k, e := range c.entries {
			if t >= e.Expires {
				c.removeLocked(k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.limit*3/4 && c.size+len(token) <= c.maxBytes*3/4 {
				break
			}
			c.removeLocked(k)
		}
	}
	// The key and the session's copy of the token (for
	// pass_access_token) share one clone of the request's string.
	token = strings.Clone(token)
	a.AccessToken = token
	c.entries[token] = a
	c.size += len(token)
}

func (c *tokenCache) remove(token string) {
	c.mu.Lock()
	c.removeLocked(token)
	c.mu.Unlock()
}

func (c *tokenCache) removeLocked(token string) {
	if _, ok := c.entries[token]; ok {
		delete(c.entries, token)
		c.size -= len(token)
	}
}
