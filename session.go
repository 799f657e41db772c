package pkceauth

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"
)

// session is what the sealed session cookie holds. Field names are short
// because every byte travels with every request.
type session struct {
	UserID            string            `json:"uid"`
	Subject           string            `json:"sub"`
	Email             string            `json:"em,omitempty"`
	EmailVerified     bool              `json:"ev,omitempty"`
	Name              string            `json:"nm,omitempty"`
	PreferredUsername string            `json:"pu,omitempty"`
	Groups            []string          `json:"gr,omitempty"`
	Claims            map[string]string `json:"cl,omitempty"`
	IssuedAt          int64             `json:"iat"`
	Expires           int64             `json:"exp"` // absolute end, unix seconds
	LastSeen          int64             `json:"ls"`  // for the idle timeout, unix seconds
	SID               string            `json:"sid,omitempty"`
	IDToken           string            `json:"idt,omitempty"` // for id_token_hint at logout
}

// now is the clock; tests replace it.
var now = time.Now

// activeSession is a decoded session with everything the hot path needs
// precomputed, shared read-only between requests that carry the same cookie.
type activeSession struct {
	*session
	groups       string
	placeholders [][2]string // key, value for the replacer
	headers      []string    // values aligned with PKCEAuth.headerNames
}

func (p *PKCEAuth) activate(s *session) *activeSession {
	a := &activeSession{session: s, groups: strings.Join(s.Groups, ",")}
	a.placeholders = append(a.placeholders,
		[2]string{"http.auth.user.id", s.UserID},
		[2]string{"http.auth.user.email", s.Email},
		[2]string{"http.auth.user.email_verified", boolString(s.EmailVerified)},
		[2]string{"http.auth.user.name", s.Name},
		[2]string{"http.auth.user.preferred_username", s.PreferredUsername},
		[2]string{"http.auth.user.groups", a.groups},
	)
	for k, v := range s.Claims {
		a.placeholders = append(a.placeholders, [2]string{"http.auth.user.claims." + k, v})
	}
	for _, h := range p.headerNames {
		a.headers = append(a.headers, s.Claims[p.Headers[h]])
	}
	return a
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// loadSession returns the request's valid session, or nil. It never fails:
// a missing, tampered, foreign-key or expired cookie is simply no session.
// touch reports that the idle timer should be written back.
func (p *PKCEAuth) loadSession(r *http.Request, jar *cookieJar) (a *activeSession, touch bool) {
	sealed := jar.readSession(r)
	if sealed == "" {
		return nil, false
	}
	a = p.sessions.get(sealed)
	if a == nil {
		plain, err := p.sessionKeys.Open(jar.name, sealed)
		if err != nil {
			p.debug("session cookie rejected", "reason", "cannot be opened (tampered, truncated or sealed with an unknown key)")
			return nil, false
		}
		var s session
		if err := json.Unmarshal(plain, &s); err != nil || s.UserID == "" {
			p.debug("session cookie rejected", "reason", "malformed content")
			return nil, false
		}
		a = p.activate(&s)
		p.sessions.put(sealed, a)
	}
	t := now().Unix()
	if t >= a.Expires {
		return nil, false
	}
	if idle := p.idleSeconds(); idle > 0 {
		if t-a.LastSeen >= idle {
			return nil, false
		}
		touch = t-a.LastSeen >= touchInterval(idle)
	}
	return a, touch
}

func (p *PKCEAuth) idleSeconds() int64 {
	if p.IdleTimeout <= 0 {
		return 0
	}
	return int64(time.Duration(p.IdleTimeout) / time.Second)
}

// touchInterval is how often a used session's idle timer is written back:
// often enough that an active user is never timed out, rarely enough that
// most responses carry no Set-Cookie.
func touchInterval(idle int64) int64 {
	return max(min(idle/4, 300), 1)
}

// saveSession seals s into the response. It reports false when the session
// is too large for the cookies, which the caller must treat as a failure.
func (p *PKCEAuth) saveSession(w http.ResponseWriter, r *http.Request, jar *cookieJar, s *session) bool {
	plain, err := json.Marshal(s)
	if err != nil {
		return false
	}
	sealed := p.sessionKeys.Seal(jar.name, plain)
	maxAge := time.Until(time.Unix(s.Expires, 0))
	return jar.setSession(w, r, sealed, maxAge)
}

// sessionCache maps a sealed cookie value to its decoded session, so that
// the hot path does not decrypt and parse JSON on every request. Entries are
// only ever created from values that opened successfully, and expiry is
// checked on every use, so a cache hit never grants more than the cookie.
type sessionCache struct {
	mu      sync.RWMutex
	entries map[string]*activeSession
	limit   int
}

func newSessionCache(limit int) *sessionCache {
	return &sessionCache{entries: make(map[string]*activeSession), limit: limit}
}

func (c *sessionCache) get(sealed string) *activeSession {
	c.mu.RLock()
	a := c.entries[sealed]
	c.mu.RUnlock()
	return a
}

func (c *sessionCache) put(sealed string, a *activeSession) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.limit {
		// Drop about a quarter at random (map order) rather than track
		// recency on every hit; misses only cost a decryption.
		drop := c.limit / 4
		for k := range c.entries {
			delete(c.entries, k)
			if drop--; drop <= 0 {
				break
			}
		}
	}
	c.entries[strings.Clone(sealed)] = a
}

func (c *sessionCache) remove(sealed string) {
	c.mu.Lock()
	delete(c.entries, sealed)
	c.mu.Unlock()
}
