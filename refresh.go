package pkceauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

// Token refresh. A session whose access token (or ID token, with
// refresh_on id_token) is within refresh_leeway of its expiry is refreshed
// before the request passes on:
//
//   - one refresh per session at a time: requests of the same session on
//     this instance wait for the one in flight (flightGroup); instances
//     sharing a server-side store take the store's lock, and whoever gets
//     it second reads the record again and finds it refreshed;
//   - the outcome is kept for refreshResultTTL under the hash of the
//     refresh token it replaced, so a request still carrying the old state
//     (a cookie set before the refresh, a cache entry on this instance)
//     gets the new session instead of spending the old token again, which a
//     provider that rotates refresh tokens would take as reuse and answer
//     by revoking the whole grant.

// Refresh defaults and limits.
const (
	defaultRefreshLeeway = 60 * time.Second
	refreshOnAccessToken = "access_token"
	refreshOnIDToken     = "id_token"
	// refreshResultTTL is how long a refresh outcome is reused for
	// requests that carry the state it replaced.
	refreshResultTTL = 30 * time.Second
	// refreshRetryAfter is how long a refresh that failed because the
	// provider was unreachable is not tried again for that session.
	refreshRetryAfter  = 5 * time.Second
	refreshResultLimit = 10000
)

var (
	// errRefreshRejected: the provider refused the refresh token (revoked,
	// expired, reused) or answered with an ID token that fails checks.
	// The session is over.
	errRefreshRejected = errors.New("the provider refused to refresh the session")
	// errRefreshUnavailable: the provider could not be reached or failed.
	// The session may still be good.
	errRefreshUnavailable = errors.New("the provider could not refresh the session")
	// errSessionGone: the session ended elsewhere (logout, revocation)
	// while this request was refreshing it.
	errSessionGone = errors.New("the session ended")
)

// refreshAt is when the session is due for a refresh (unix seconds), or 0
// for never: refresh off, no refresh token, or no known expiry. The
// leeway is capped at half the token's lifetime, so a provider issuing
// tokens shorter than the leeway does not cause a refresh per request.
func (p *PKCEAuth) refreshAt(s *session) int64 {
	if !p.refreshing || s.RefreshToken == "" {
		return 0
	}
	exp := s.AccessExpiry
	if p.refreshOnIDToken {
		exp = s.IDTokenExpiry
	}
	if exp <= 0 {
		return 0
	}
	leeway := p.refreshLeeway
	if life := exp - s.TokenTime; s.TokenTime > 0 && life > 0 {
		leeway = min(leeway, life/2)
	}
	return max(exp-leeway, 1)
}

// tokenExpiry is the expiry that refresh watches, for the keep-or-drop
// decision when the provider cannot be reached.
func (p *PKCEAuth) tokenExpiry(s *session) int64 {
	if p.refreshOnIDToken {
		return s.IDTokenExpiry
	}
	return s.AccessExpiry
}

// keepTokens stores the tokens of a login or a refresh in the session.
// With a server-side store every token is kept. In cookie mode only what
// is used travels in the cookie: the refresh token and expiries when
// refresh is on, the access token when a route passes it upstream.
func (p *PKCEAuth) keepTokens(s *session, tok *oauth2.Token, rawIDToken string, t time.Time) {
	server := p.server != nil
	s.TokenTime = t.Unix()
	if server || p.keepAccessToken {
		s.AccessToken = tok.AccessToken
	}
	if server || p.refreshing {
		s.RefreshToken = tok.RefreshToken
		s.AccessExpiry = 0
		if !tok.Expiry.IsZero() {
			s.AccessExpiry = tok.Expiry.Unix()
		}
		if rawIDToken != "" {
			s.IDTokenExpiry = jwtExpiry(rawIDToken)
		}
	}
	if !server && !p.refreshing {
		s.TokenTime = 0
	}
}

// jwtExpiry reads exp from a JWT whose signature was already verified;
// 0 when absent.
func jwtExpiry(raw string) int64 {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return 0
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return 0
	}
	var c struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return 0
	}
	exp, err := c.Exp.Float64()
	if err != nil {
		return 0
	}
	return int64(exp)
}

// tokenHash names a refresh token in maps without keeping it there.
func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return string(sum[:16])
}

// refreshRequest refreshes a's tokens for the request and decides what the
// request gets. It returns the session to continue with, nil when the
// request has no valid session any more (the caller then starts a login
// or answers 401), or errStoreDown.
func (p *PKCEAuth) refreshRequest(w http.ResponseWriter, r *http.Request, jar *cookieJar, a *activeSession) (*activeSession, error) {
	na, err := p.refreshFlights.do(p.store.flightKey(a), func() (*activeSession, error) {
		// The refresh serves every waiter: it must not end with the
		// first request's client.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Duration(p.Timeout)+refreshLockMargin)
		defer cancel()
		return p.refreshSession(ctx, a)
	})
	switch {
	case err == nil && na == nil: // cannot happen; never let a nil through
		return nil, nil
	case err == nil:
		p.store.deliver(w, r, jar, na)
		return na, nil
	case errors.Is(err, errStoreDown):
		// The store is needed for the refresh, not for a token that is
		// still valid: serve this request, try again with the next.
		if now().Unix() < p.tokenExpiry(a.session) {
			return a, nil
		}
		return nil, err
	case errors.Is(err, errRefreshUnavailable):
		// Keep what the session has while its token is still valid, or
		// until its absolute expiry when configured; otherwise this
		// request is unauthenticated but the session is kept for the
		// next try.
		if now().Unix() < p.tokenExpiry(a.session) || p.KeepSessionWhenIdPDown {
			return a, nil
		}
		return nil, nil
	default: // rejected, or ended elsewhere
		jar.clearSession(w, r)
		return nil, nil
	}
}

// refreshSession refreshes a once, whoever else asks: see the top of the
// file. It runs inside the single-flight of a's flight key.
func (p *PKCEAuth) refreshSession(ctx context.Context, a *activeSession) (*activeSession, error) {
	oldKey := tokenHash(a.RefreshToken)
	if res, ok := p.refreshResults.get(oldKey); ok {
		return res.a, res.err
	}
	unlock, err := p.store.lock(ctx, a)
	if err != nil {
		return nil, err
	}
	defer unlock()
	cur, err := p.store.reload(ctx, a)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		p.refreshResults.put(oldKey, nil, errSessionGone, refreshResultTTL)
		return nil, errSessionGone
	}
	if cur.RefreshToken != a.RefreshToken || cur.refreshAt == 0 || now().Unix() < cur.refreshAt {
		// Another instance refreshed it while this one waited.
		p.refreshResults.put(oldKey, cur, nil, refreshResultTTL)
		return cur, nil
	}

	s, err := p.redeemRefreshToken(ctx, cur)
	if err != nil {
		if errors.Is(err, errRefreshRejected) {
			p.metrics.refreshed("rejected")
			if derr := p.store.discard(ctx, cur); derr != nil {
				p.logger.Warn("session whose refresh was refused could not be deleted", zap.Error(derr))
			}
			p.refreshResults.put(oldKey, nil, err, refreshResultTTL)
		} else {
			p.metrics.refreshed("unavailable")
			p.refreshResults.put(oldKey, nil, err, refreshRetryAfter)
		}
		if c := p.logger.Check(zap.WarnLevel, "session refresh failed"); c != nil {
			c.Write(zap.String("user_id", cur.UserID), zap.Error(err))
		}
		return nil, err
	}
	p.metrics.refreshed("succeeded")
	na, err := p.store.update(ctx, cur, s)
	if err != nil {
		return nil, err
	}
	if na == nil {
		p.refreshResults.put(oldKey, nil, errSessionGone, refreshResultTTL)
		return nil, errSessionGone
	}
	p.refreshResults.put(oldKey, na, nil, refreshResultTTL)
	if c := p.logger.Check(zap.DebugLevel, "session refreshed"); c != nil {
		c.Write(zap.String("user_id", na.UserID), zap.Int64("access_expiry", na.AccessExpiry))
	}
	return na, nil
}

// redeemRefreshToken calls the token endpoint with the refresh token and
// returns the session with its new tokens. A new ID token, if the provider
// sends one, is verified (signature, iss, aud, exp) and must name the same
// subject (OpenID Connect Core 12.2); claims stay those of the login.
func (p *PKCEAuth) redeemRefreshToken(ctx context.Context, cur *activeSession) (*session, error) {
	st, err := p.provider.get(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errRefreshUnavailable, err)
	}
	tctx, cancel := context.WithTimeout(p.provider.context(ctx), time.Duration(p.Timeout))
	defer cancel()
	tok, err := st.oauth2.TokenSource(tctx, &oauth2.Token{RefreshToken: cur.RefreshToken}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode >= 400 && re.Response.StatusCode < 500 {
			return nil, fmt.Errorf("%w: token endpoint answered HTTP %d %s", errRefreshRejected, re.Response.StatusCode, truncate(re.ErrorCode, 64))
		}
		return nil, fmt.Errorf("%w: %s", errRefreshUnavailable, truncate(err.Error(), 200))
	}
	if tok.AccessToken == "" {
		return nil, fmt.Errorf("%w: token response without access_token", errRefreshRejected)
	}
	s := *cur.session
	t := now()
	raw, _ := tok.Extra("id_token").(string)
	if raw != "" {
		idt, err := st.verifier.Verify(tctx, raw)
		if err != nil {
			return nil, fmt.Errorf("%w: refreshed ID token: %s", errRefreshRejected, truncate(err.Error(), 200))
		}
		if idt.Subject != cur.Subject {
			return nil, fmt.Errorf("%w: refreshed ID token names another subject", errRefreshRejected)
		}
		if p.keepIDToken {
			s.IDToken = raw
		}
	}
	p.keepTokens(&s, tok, raw, t)
	s.LastSeen = max(s.LastSeen, t.Unix())
	return &s, nil
}

// flightGroup runs one call per key at a time; callers with the same key
// that arrive meanwhile wait for it and share its result.
type flightGroup struct {
	mu    sync.Mutex
	calls map[string]*flight
}

type flight struct {
	done chan struct{}
	a    *activeSession
	err  error
}

func newFlightGroup() *flightGroup { return &flightGroup{calls: map[string]*flight{}} }

func (g *flightGroup) do(key string, fn func() (*activeSession, error)) (*activeSession, error) {
	g.mu.Lock()
	if f, ok := g.calls[key]; ok {
		g.mu.Unlock()
		<-f.done
		return f.a, f.err
	}
	f := &flight{done: make(chan struct{})}
	g.calls[key] = f
	g.mu.Unlock()

	defer func() {
		g.mu.Lock()
		delete(g.calls, key)
		g.mu.Unlock()
		close(f.done)
	}()
	f.a, f.err = fn()
	return f.a, f.err
}

// resultCache keeps refresh outcomes briefly, by the replaced refresh
// token's hash. It is bounded: past the limit expired entries go first,
// then arbitrary ones.
type resultCache struct {
	mu      sync.Mutex
	entries map[string]refreshResult
	limit   int
}

type refreshResult struct {
	a       *activeSession
	err     error
	expires int64 // unix nanoseconds
}

func newResultCache(limit int) *resultCache {
	return &resultCache{entries: map[string]refreshResult{}, limit: limit}
}

func (c *resultCache) get(key string) (refreshResult, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	res, ok := c.entries[key]
	if !ok || now().UnixNano() >= res.expires {
		return refreshResult{}, false
	}
	return res, true
}

func (c *resultCache) put(key string, a *activeSession, err error, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := now().UnixNano()
	if len(c.entries) >= c.limit {
		for k, e := range c.entries {
			if t >= e.expires {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.limit*3/4 {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[key] = refreshResult{a: a, err: err, expires: t + int64(ttl)}
}
