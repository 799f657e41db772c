package pkceauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
)

// session is what the sealed session cookie holds, and with a server-side
// store the record kept there. Field names are short and nothing is kept
// twice because in cookie mode every byte travels with every request: the
// standard claims live in their fields only (Claims holds the others, see
// claimValue), and UserID is omitted when it equals Subject.
type session struct {
	UserID            string            `json:"uid,omitempty"`
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
	IDToken           string            `json:"idt,omitempty"` // for id_token_hint at logout, see store_id_token

	// Tokens for refresh and pass_access_token. A server-side store keeps
	// them all; in cookie mode only what is needed goes into the cookie
	// (see keepTokens).
	AccessToken   string `json:"at,omitempty"`
	RefreshToken  string `json:"rt,omitempty"`
	AccessExpiry  int64  `json:"ate,omitempty"` // unix seconds, 0 when unknown
	IDTokenExpiry int64  `json:"ite,omitempty"` // unix seconds, 0 when unknown
	TokenTime     int64  `json:"tt,omitempty"`  // when the tokens were issued

	// For step-up and authorization rules (access.go): the login's acr
	// and auth_time (unix seconds, 0 when the ID token had none), and
	// the claims the rules read, by dotted path, as lists. A path the
	// login looked for but did not find is present with no values.
	ACR        string              `json:"acr,omitempty"`
	AuthTime   int64               `json:"ath,omitempty"`
	RuleClaims map[string][]string `json:"rc,omitempty"`
}

// now is the clock; tests replace it.
var now = time.Now

// activeSession is a decoded session with everything the hot path needs
// precomputed, shared read-only between requests that carry the same cookie.
// A named provider shares it between all its routes, so it holds nothing
// that depends on one route's settings (headers are looked up per request).
type activeSession struct {
	*session
	groups       string
	email        string      // lower case, for rules
	provider     string      // the named provider that signed it in, "" inline
	placeholders [][2]string // key, value for the replacer
	std          [][2]string // claim, value of the claims kept in session fields (stdClaims)
	bearer       string      // "Bearer <access token>" when a route passes it as Authorization
	refreshAt    int64       // unix seconds from which to refresh; 0 never

	// seen is the last use known to this instance, for the idle timeout:
	// the cookie's LastSeen in cookie mode; with a server-side store also
	// advanced by touches (written back at most once per touch interval).
	seen atomic.Int64

	// With a server-side store: the session id and the cookie value it was
	// read under (the cache key), and until when (unix nanoseconds) this
	// copy may be used without reading the store again.
	id     string
	sealed string
	fresh  int64

	// In cookie mode, the JSON of a refreshed session, sealed into the
	// cookie of each response that carried the old state.
	plain []byte

	// The signed identity assertion last minted for this session, reused
	// until it is due for renewal (assertion.go).
	assertion atomic.Pointer[mintedAssertion]
}

func (p *PKCEAuth) activate(s *session) *activeSession {
	a := &activeSession{session: s, groups: strings.Join(s.Groups, ","), email: strings.ToLower(s.Email)}
	a.placeholders = append(a.placeholders,
		[2]string{"http.auth.user.id", s.UserID},
		[2]string{"http.auth.user.email", s.Email},
		[2]string{"http.auth.user.email_verified", boolString(s.EmailVerified)},
		[2]string{"http.auth.user.name", s.Name},
		[2]string{"http.auth.user.preferred_username", s.PreferredUsername},
		[2]string{"http.auth.user.groups", a.groups},
	)
	for _, k := range p.stdClaims {
		if v := p.claimValue(s, k); v != "" {
			a.std = append(a.std, [2]string{k, v})
			a.placeholders = append(a.placeholders, [2]string{"http.auth.user.claims." + k, v})
		}
	}
	for k, v := range s.Claims {
		a.placeholders = append(a.placeholders, [2]string{"http.auth.user.claims." + k, v})
	}
	if p.providerName != "" {
		a.placeholders = append(a.placeholders, [2]string{"http.auth.user.provider", p.providerName})
		// Also for header mappings and assertion claims, as "provider".
		a.std = append(a.std, [2]string{"provider", p.providerName})
		a.provider = p.providerName
	}
	a.seen.Store(s.LastSeen)
	a.refreshAt = p.refreshAt(s)
	if p.passBearer && s.AccessToken != "" {
		a.bearer = "Bearer " + s.AccessToken
	}
	return a
}

// decodeSession parses a session's JSON; ok is false for malformed content.
func decodeSession(plain []byte) (s *session, ok bool) {
	s = new(session)
	if err := json.Unmarshal(plain, s); err != nil || s.Subject == "" {
		return nil, false
	}
	if s.UserID == "" {
		s.UserID = s.Subject
	}
	return s, true
}

// encodeSession is the JSON kept for s, without what decodeSession restores.
func encodeSession(s *session) ([]byte, error) {
	if s.UserID == s.Subject {
		c := *s
		c.UserID = ""
		s = &c
	}
	return json.Marshal(s)
}

// claimValue is the session's value of the claim at path, as a string
// (arrays comma-joined), "" when the session does not have it.
func (p *PKCEAuth) claimValue(s *session, path string) string {
	switch path {
	case p.UserIDClaim:
		return s.UserID
	case p.GroupsClaim:
		return strings.Join(s.Groups, ",")
	case "sub":
		return s.Subject
	case "email":
		return s.Email
	case "email_verified":
		if s.Email == "" && !s.EmailVerified {
			return ""
		}
		return boolString(s.EmailVerified)
	case "name":
		return s.Name
	case "preferred_username":
		return s.PreferredUsername
	}
	return s.Claims[path]
}

// claim is the session's value of the claim at path, as a string (arrays
// comma-joined), "" when the session does not have it. It does not
// allocate: the hot path reads header values with it.
func (a *activeSession) claim(path string) string {
	for _, kv := range a.std {
		if kv[0] == path {
			return kv[1]
		}
	}
	return a.Claims[path]
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// sessionTodo is what a loaded session needs before its request passes
// on, decided on the one clock reading of the session check.
type sessionTodo uint8

const (
	todoTouch   sessionTodo = 1 << iota // write the idle timer back
	todoRefresh                         // refresh the tokens first
)

// loadSession returns the request's valid session, or nil. It never fails:
// a missing, tampered, foreign-key or expired cookie is simply no session.
// todo says whether the idle timer should be written back and whether the
// tokens are due for a refresh.
func (p *PKCEAuth) loadSession(r *http.Request, jar *cookieJar) (a *activeSession, todo sessionTodo) {
	sealed := jar.readSession(r)
	if sealed == "" {
		return nil, 0
	}
	a = p.sessions.get(sealed)
	if a == nil {
		plain, err := p.sessionKeys.Open(jar.name, sealed)
		if err != nil {
			p.debug("session cookie rejected", "reason", "cannot be opened (tampered, truncated or sealed with an unknown key)")
			return nil, 0
		}
		s, ok := decodeSession(plain)
		if !ok {
			p.debug("session cookie rejected", "reason", "malformed content")
			return nil, 0
		}
		a = p.activate(s)
		p.sessions.put(sealed, a)
	}
	return a.check(p, now().Unix())
}

// check applies the absolute and the idle expiry at time t (unix seconds)
// and says what the session needs: the one check of every store.
func (a *activeSession) check(p *PKCEAuth, t int64) (*activeSession, sessionTodo) {
	if t >= a.Expires {
		return nil, 0
	}
	var todo sessionTodo
	if idle := p.idleSeconds(); idle > 0 {
		seen := a.seen.Load()
		if t-seen >= idle {
			return nil, 0
		}
		if t-seen >= touchInterval(idle) {
			todo = todoTouch
		}
	}
	if a.refreshAt != 0 && t >= a.refreshAt {
		todo |= todoRefresh
	}
	return a, todo
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

// startSession keeps the new session of a login, with its tokens, in the
// configured store and sets the cookie. It returns the failure to show
// when that is not possible.
func (p *PKCEAuth) startSession(w http.ResponseWriter, r *http.Request, jar *cookieJar, s *session, token *oauth2.Token) *loginFailure {
	raw, _ := token.Extra("id_token").(string)
	p.keepTokens(s, token, raw, time.Unix(s.IssuedAt, 0))
	err := p.store.create(r.Context(), w, r, jar, s)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errSessionTooLarge):
		return failLogin(http.StatusInternalServerError, "Session too large",
			"Your account's sign-in data is too large to keep in cookies. Ask the site's administrator to keep fewer claims or to use a server-side session store.",
			fmt.Sprintf("session does not fit in %d cookies of %d bytes; keep fewer claims or use session store redis or caddy_storage", maxChunks, maxChunkLen))
	default:
		w.Header().Set("Retry-After", "5")
		return failLogin(http.StatusServiceUnavailable, "Session store unavailable",
			"You signed in, but the session could not be saved because the session store is unreachable. Please try again in a moment.",
			truncate(err.Error(), 300))
	}
}

// endSession ends the request's session in the store and clears the
// cookie; it returns the session that ended, if there was one. It fails
// only when a server-side store cannot be reached, and then the cookie is
// kept, so that the logout can be retried and really ends the session.
func (p *PKCEAuth) endSession(w http.ResponseWriter, r *http.Request, jar *cookieJar) (*activeSession, error) {
	return p.store.remove(r.Context(), w, r, jar)
}

// saveSession seals s into the response. It reports false when the session
// is too large for the cookies, which the caller must treat as a failure.
func (p *PKCEAuth) saveSession(w http.ResponseWriter, r *http.Request, jar *cookieJar, s *session) bool {
	plain, err := encodeSession(s)
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

// removeIf drops every entry for which drop returns true.
func (c *sessionCache) removeIf(drop func(*activeSession) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, a := range c.entries {
		if drop(a) {
			delete(c.entries, k)
		}
	}
}
