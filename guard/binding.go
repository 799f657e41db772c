package pkceguard

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// binding is what the guard remembers of an accepted authorization request:
// first as a pending request (in a sealed cookie and under its state), then,
// once the server issues a code for it, under that code.
//
// It holds no secret: the challenge is kept as its SHA-256 (for plain it
// is the verifier itself), the state as its SHA-256.
type binding struct {
	Challenge []byte `json:"ch"`           // SHA-256 of code_challenge
	Method    string `json:"m"`            // code_challenge_method
	ClientID  string `json:"c"`            // client_id
	Redirect  string `json:"r"`            // redirect_uri, as sent or as configured
	Sent      bool   `json:"rs,omitempty"` // whether the request carried redirect_uri
	State     []byte `json:"s,omitempty"`  // SHA-256 of state; nil without state
	Expires   int64  `json:"e"`            // Unix seconds
	// Conflict marks a state record that two different authorization
	// requests claimed; it never binds a code.
	Conflict bool `json:"x,omitempty"`
}

// expired reports whether b is past its lifetime.
func (b *binding) expired() bool {
	return now().Unix() >= b.Expires
}

// sameRequest reports whether b and o remember the same authorization request
// parameters (a server may validate one request more than once, as Dex does
// when it forwards to a connector).
func (b *binding) sameRequest(o *binding) bool {
	return subtle.ConstantTimeCompare(b.Challenge, o.Challenge) == 1 &&
		b.Method == o.Method && b.ClientID == o.ClientID && b.Redirect == o.Redirect &&
		subtle.ConstantTimeCompare(b.State, o.State) == 1
}

// matchesRedirect reports whether a code delivered to target (see
// redirectTarget) with state was meant for the request b remembers.
func (b *binding) matchesRedirect(target, state string) bool {
	if b.Conflict || b.expired() {
		return false
	}
	u, err := url.Parse(b.Redirect)
	if err != nil || redirectTarget(u) != target {
		return false
	}
	if b.State == nil {
		return state == ""
	}
	return state != "" && subtle.ConstantTimeCompare(digest(state), b.State) == 1
}

// digest is the SHA-256 of s.
func digest(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

// redirectTarget reduces a redirect URI, or the Location a code is delivered
// to, to what identifies the client's endpoint: scheme, host and path (or
// the opaque part of a custom-scheme URI), without the query and fragment
// that carry the response, with scheme and host in lower case and a default
// port dropped.
func redirectTarget(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	if u.Opaque != "" {
		return scheme + ":" + u.Opaque
	}
	host := strings.ToLower(u.Host)
	if h, port, err := net.SplitHostPort(host); err == nil &&
		(scheme == "https" && port == "443" || scheme == "http" && port == "80") {
		host = h
		if strings.Contains(h, ":") {
			host = "[" + h + "]"
		}
	}
	return scheme + "://" + host + u.EscapedPath()
}

// Store keys: a kind, then the hex SHA-256 of what identifies the record, so
// a store never holds a code or a state.
func codeKey(code string) string {
	return storeKey(kindCode, "code\x00"+code)
}

func stateKey(target, state string) string {
	return storeKey(kindState, "state\x00"+target+"\x00"+state)
}

func storeKey(kind, s string) string {
	sum := sha256.Sum256([]byte("pkce_guard\x00" + s))
	return kind + ":" + hex.EncodeToString(sum[:])
}

// Record kinds, the prefix of every store key.
const (
	kindCode  = "code"
	kindState = "state"
)

// putBinding stores b under key until it expires.
func (g *Guard) putBinding(ctx context.Context, key string, b *binding) error {
	data, err := json.Marshal(b)
	if err != nil {
		return err
	}
	return g.store.Put(ctx, key, data, time.Duration(g.BindingLifetime))
}

// takeBinding removes and returns the binding under key, or nil when there
// is none or it has expired.
func (g *Guard) takeBinding(ctx context.Context, key string) (*binding, error) {
	data, err := g.store.Take(ctx, key)
	if err != nil || data == nil {
		return nil, err
	}
	var b binding
	if json.Unmarshal(data, &b) != nil || b.expired() {
		return nil, nil
	}
	return &b, nil
}

// rememberState records b under its redirect target and state, for a code
// redirect that arrives without the pending-request cookie. When another,
// different request already claimed the same target and state, the record
// becomes a conflict that binds nothing: otherwise whoever learned a
// victim's state could have the victim's code bound to their own challenge.
func (g *Guard) rememberState(ctx context.Context, key string, b *binding) error {
	data, err := json.Marshal(b)
	if err != nil {
		return err
	}
	ttl := time.Duration(g.BindingLifetime)
	added, err := g.store.Add(ctx, key, data, ttl)
	if err != nil || added {
		return err
	}
	prev, err := g.takeBinding(ctx, key)
	if err != nil {
		return err
	}
	if prev != nil && !prev.Conflict && prev.sameRequest(b) {
		return g.store.Put(ctx, key, data, ttl)
	}
	if c := g.logger.Check(zapcore.WarnLevel, "two different authorization requests used the same redirect_uri and state; codes for them will be bound only through the browser cookie"); c != nil {
		c.Write(zap.String("client_id", b.ClientID), zap.String("redirect_uri", b.Redirect))
	}
	return g.putBinding(ctx, key, &binding{Conflict: true, Expires: b.Expires})
}

// Pending-request cookies: one per client_id and redirect_uri, so that a
// browser signing in to several clients keeps one for each.
const (
	cookiePrefix       = "pkce_guard_"
	secureCookiePrefix = "__Host-" + cookiePrefix
	// Browsers keep cookies up to 4096 bytes; a larger one is not set and
	// the request relies on its state record alone.
	maxCookieSize = 4000
	// The most pending-request cookies one request is searched for.
	maxCookiesSearched = 20
)

// cookieName is the name of the pending-request cookie for b.
func cookieName(b *binding, secure bool) string {
	sum := sha256.Sum256([]byte(b.ClientID + "\x00" + b.Redirect))
	name := cookiePrefix + hex.EncodeToString(sum[:8])
	if secure {
		name = "__Host-" + name
	}
	return name
}

// setPendingCookie adds the sealed pending-request cookie for b to h.
func (g *Guard) setPendingCookie(ctx context.Context, h http.Header, b *binding, secure bool) error {
	kr, err := g.cookieKeyring(ctx)
	if err != nil {
		return err
	}
	data, err := json.Marshal(b)
	if err != nil {
		return err
	}
	name := cookieName(b, secure)
	c := &http.Cookie{
		Name:     name,
		Value:    kr.Seal(name, data),
		Path:     "/",
		MaxAge:   int(time.Duration(g.BindingLifetime).Seconds()),
		HttpOnly: true,
		Secure:   secure,
		// The login may return to the server through a cross-site POST
		// (an upstream identity provider's form_post or SAML binding);
		// Lax would drop the cookie there. None requires Secure.
		SameSite: http.SameSiteLaxMode,
	}
	if secure {
		c.SameSite = http.SameSiteNoneMode
	}
	if v := c.String(); v != "" && len(v) <= maxCookieSize {
		h.Add("Set-Cookie", v)
	}
	return nil
}

// clearPendingCookie adds to h the removal of the cookie for b.
func clearPendingCookie(h http.Header, b *binding, secure bool) {
	c := &http.Cookie{Name: cookieName(b, secure), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: secure}
	h.Add("Set-Cookie", c.String())
}

// pendingFromCookies returns the pending request, among the sealed cookies
// of r, for a code delivered to target with state.
func (g *Guard) pendingFromCookies(r *http.Request, target, state string) *binding {
	searched := 0
	for _, c := range r.Cookies() {
		if !strings.HasPrefix(c.Name, cookiePrefix) && !strings.HasPrefix(c.Name, secureCookiePrefix) {
			continue
		}
		if searched++; searched > maxCookiesSearched {
			break
		}
		kr, err := g.cookieKeyring(r.Context())
		if err != nil {
			return nil
		}
		data, err := kr.Open(c.Name, c.Value)
		if err != nil {
			continue
		}
		var b binding
		if json.Unmarshal(data, &b) != nil {
			continue
		}
		if b.matchesRedirect(target, state) {
			return &b
		}
	}
	return nil
}

// now is the clock, replaced in tests.
var now = time.Now
