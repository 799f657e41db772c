package pkceauth

import (
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// ServeHTTP routes the callback and logout paths to their flows, passes
// requests with a valid session on, and starts a login (navigations) or
// answers 401 (everything else) for requests without one. With several
// named providers, the first whose session the request carries signs it
// in, and a navigation without any gets the provider chooser.
func (p *PKCEAuth) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// The JWK Set is public: served before any credential is looked at.
	if path := p.jwksPath(); path != "" && r.URL.Path == path {
		return p.serveJWKS(w, r)
	}
	if p.bearer != nil {
		if done, err := p.serveBearer(w, r, next); done {
			return err
		}
	}
	for _, c := range p.cores {
		switch r.URL.Path {
		case c.CallbackPath:
			return c.serveCallback(w, r, c.cookies(r))
		case c.LogoutPath:
			return c.serveLogout(w, r, c.cookies(r))
		}
	}

	var (
		s    *activeSession
		core *PKCEAuth
		jar  *cookieJar
	)
	for _, c := range p.cores {
		jar = c.cookies(r)
		a, err := c.currentSession(w, r, jar)
		if err != nil {
			c.logStoreError(r, err)
			return c.storeUnavailable(w, r)
		}
		if a != nil {
			s, core = a, c
			break
		}
	}
	if p.userinfoPath != "" && r.URL.Path == p.userinfoPath {
		return p.serveUserinfo(w, r, s)
	}
	if s != nil {
		if p.access != nil {
			if handled, err := p.enforceAccess(w, r, core, jar, s); handled {
				return err
			}
		}
		p.authenticate(r, jar, s)
		if p.assertion != nil {
			if err := p.setAssertion(r, s); err != nil {
				return p.assertionFailed(w, r, err)
			}
		}
		return next.ServeHTTP(w, r)
	}
	if p.PassUnauthenticated {
		p.passAnonymous(r)
		return next.ServeHTTP(w, r)
	}
	if p.classify(r) != navigationRequest {
		w.Header().Set("WWW-Authenticate", p.bearerChallenge(r, "", ""))
		return p.fail(w, r, http.StatusUnauthorized, "Authentication required",
			"This resource needs a signed-in session. Sign in through the site first.")
	}
	if len(p.cores) > 1 {
		return p.chooseProvider(w, r)
	}
	return p.cores[0].startLogin(w, r, p.cores[0].cookies(r), p.access)
}

// currentSession returns the request's valid session, refreshed and its
// idle timer written back as due, or nil; an error only when the session
// store is needed and fails.
func (p *PKCEAuth) currentSession(w http.ResponseWriter, r *http.Request, jar *cookieJar) (*activeSession, error) {
	s, todo, err := p.store.load(r, jar)
	if err != nil {
		return nil, err
	}
	if todo&todoRefresh != 0 {
		if s, err = p.refreshRequest(w, r, jar, s); err != nil {
			return nil, err
		}
		todo = 0 // a refresh records the use
	}
	if s != nil && todo&todoTouch != 0 {
		p.store.touch(w, r, jar, s)
	}
	return s, nil
}

// authenticate exposes the identity to later handlers: placeholders, the
// configured upstream headers (client-supplied ones deleted first), and
// the request without the module's cookies.
func (p *PKCEAuth) authenticate(r *http.Request, jar *cookieJar, s *activeSession) {
	exposeIdentity(r, s)
	if len(p.headerNames) > 0 || p.PassAccessToken != "" || p.assertion != nil {
		p.deleteUnderscoreLookalikes(r.Header)
	}
	for i, name := range p.headerNames {
		r.Header.Del(name)
		if v := s.claim(p.headerClaims[i]); v != "" {
			r.Header.Set(name, v)
		}
	}
	if p.PassAccessToken != "" {
		r.Header.Del(p.PassAccessToken)
		v := s.AccessToken
		if p.passBearer {
			v = s.bearer
		}
		if v != "" {
			r.Header.Set(p.PassAccessToken, v)
		}
	}
	if !p.KeepCookies {
		jar.stripCookies(r)
		if len(p.cores) > 1 {
			p.stripOtherProviders(r, jar)
		}
	}
}

// debug logs at debug level with string fields given as key, value pairs.
func (p *PKCEAuth) debug(msg string, kv ...string) {
	if c := p.logger.Check(zap.DebugLevel, msg); c != nil {
		fields := make([]zap.Field, 0, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			fields = append(fields, zap.String(kv[i], kv[i+1]))
		}
		c.Write(fields...)
	}
}

// sortedKeys returns the map's keys in order, so behaviour and adapted JSON
// are deterministic.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return slices.Clip(keys)
}

// placeholder answers the {http.auth.user.*} placeholders of the session,
// as a caddy.ReplacerFunc.
func (s *activeSession) placeholder(key string) (any, bool) {
	if !strings.HasPrefix(key, userPlaceholderPrefix) {
		return nil, false
	}
	for _, kv := range s.placeholders {
		if kv[0] == key {
			return kv[1], true
		}
	}
	return nil, false
}

const userPlaceholderPrefix = "http.auth.user."

// deleteUnderscoreLookalikes removes client-supplied headers such as
// X_User that CGI, PHP and some frameworks read as the identity header
// X-User: deleting only the exact name would let a client forge them.
func (p *PKCEAuth) deleteUnderscoreLookalikes(h http.Header) {
	for k := range h {
		if !strings.Contains(k, "_") {
			continue
		}
		norm := http.CanonicalHeaderKey(strings.ReplaceAll(k, "_", "-"))
		if norm == http.CanonicalHeaderKey(p.PassAccessToken) || p.assertion != nil && norm == p.assertion.header || slices.ContainsFunc(p.headerNames, func(n string) bool {
			return http.CanonicalHeaderKey(n) == norm
		}) {
			delete(h, k)
		}
	}
}
