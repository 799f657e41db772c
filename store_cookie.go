package pkceauth

import (
	"context"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// cookieStore keeps the whole session in the sealed cookie (session.go):
// nothing on the server, nothing to share between instances but the key.
// Its hot path is loadSession with the decoded-session cache, unchanged.
type cookieStore struct{ p *PKCEAuth }

func (c cookieStore) load(r *http.Request, jar *cookieJar) (*activeSession, sessionTodo, error) {
	a, todo := c.p.loadSession(r, jar)
	return a, todo, nil
}

func (c cookieStore) create(_ context.Context, w http.ResponseWriter, r *http.Request, jar *cookieJar, s *session) error {
	if !c.p.saveSession(w, r, jar, s) {
		return errSessionTooLarge
	}
	return nil
}

// touch writes the session back with a new idle timestamp.
func (c cookieStore) touch(w http.ResponseWriter, r *http.Request, jar *cookieJar, a *activeSession) {
	updated := *a.session
	updated.LastSeen = now().Unix()
	if !c.p.saveSession(w, r, jar, &updated) {
		c.p.logger.Warn("session could not be refreshed: too large for cookies", zap.String("user_id", a.UserID))
	}
}

func (c cookieStore) remove(_ context.Context, w http.ResponseWriter, r *http.Request, jar *cookieJar) (*activeSession, error) {
	a, _ := c.p.loadSession(r, jar)
	if sealed := jar.readSession(r); sealed != "" {
		c.p.sessions.remove(sealed)
	}
	jar.clearSession(w, r)
	return a, nil
}

// A cookie session is identified by its refresh token: every request that
// carries the same cookie state refreshes together.
func (c cookieStore) flightKey(a *activeSession) string { return tokenHash(a.RefreshToken) }

// Instances that share only a key cannot coordinate: there is no lock.
func (c cookieStore) lock(context.Context, *activeSession) (func(), error) { return func() {}, nil }

// The cookie is the state.
func (c cookieStore) reload(_ context.Context, a *activeSession) (*activeSession, error) {
	return a, nil
}

// update seals the refreshed session into a new cookie value, which
// deliver then sets on every response that carried the old one.
func (c cookieStore) update(_ context.Context, _ *activeSession, s *session) (*activeSession, error) {
	plain, err := encodeSession(s)
	if err != nil {
		return nil, err
	}
	// The sealed value is bound to the cookie name, which differs
	// between the plain and the secure jar: deliver seals it.
	na := c.p.activate(s)
	na.plain = plain
	return na, nil
}

// deliver sets the refreshed session's cookie. The sealed value is cached
// so that the browser's next request, carrying it, is a cache hit.
func (c cookieStore) deliver(w http.ResponseWriter, r *http.Request, jar *cookieJar, a *activeSession) {
	sealed := c.p.sessionKeys.Seal(jar.name, a.plain)
	if !jar.setSession(w, r, sealed, time.Until(time.Unix(a.Expires, 0))) {
		c.p.logger.Warn("refreshed session could not be saved: too large for cookies; keep fewer claims or use a server-side session store",
			zap.String("user_id", a.UserID))
		return
	}
	c.p.sessions.put(sealed, a)
}

func (c cookieStore) discard(context.Context, *activeSession) error { return nil }

func (c cookieStore) close() {}
