package pkceauth

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-pkce/caddy-pkce/internal/seal"
)

// backend is where a server-side store keeps its records: Redis
// (store_redis.go) or Caddy's storage (store_storage.go). A record is the
// sealed JSON of a session, tokens included, kept until the session's
// absolute expiry; its last use (for the idle timeout) is kept beside it so
// that a touch never overwrites tokens a refresh wrote meanwhile.
//
// Every method returns errNotFound or a technical error only.
type backend interface {
	// kind is the store's config name, for logs.
	kind() string
	// identity is equal for backends that reach the same records, so the
	// admin API revokes once per store, not once per handler.
	identity() string
	get(ctx context.Context, id string) (record string, seen int64, err error)
	create(ctx context.Context, id, subject, record string, seen int64, expires time.Time) error
	// update replaces the record of an existing session; false when the
	// session is gone (logged out or revoked meanwhile), which must win.
	update(ctx context.Context, id, record string) (bool, error)
	// touch advances the last use, never moving it back.
	touch(ctx context.Context, id string, seen int64) error
	// delete removes a session; subject may be "" when unknown.
	delete(ctx context.Context, id, subject string) error
	// revokeSubject removes every session of a subject and returns how
	// many there were.
	revokeSubject(ctx context.Context, subject string) (int, error)
	// lock takes the cross-instance refresh lock of a session, waiting
	// for it; the lock expires by itself if its holder dies.
	lock(ctx context.Context, id string) (unlock func(), err error)
	close()
}

// errNotFound: no such session in the backend.
var errNotFound = errors.New("no such session")

// serverStore keeps sessions in a backend. The browser holds only the
// session id (256 random bits), sealed with the session keys; the record
// is sealed too, so that the store's contents reveal no tokens.
//
// A bounded in-process cache, keyed by the cookie value, keeps a record for
// cache_ttl: within that bound a change made by another instance (logout,
// revocation, refresh) may go unseen here. This instance's own logouts and
// refreshes update its cache at once.
type serverStore struct {
	p          *PKCEAuth
	backend    backend
	recordKeys *seal.Keyring
	cache      *sessionCache
	cacheTTL   time.Duration
	health     storeHealth
}

// sessionIDLength is the length of a session id: 32 random bytes,
// base64url without padding.
const sessionIDLength = 43

func (st *serverStore) load(r *http.Request, jar *cookieJar) (*activeSession, sessionTodo, error) {
	sealed := jar.readSession(r)
	if sealed == "" {
		return nil, 0, nil
	}
	t := now()
	a := st.cache.get(sealed)
	if a == nil || t.UnixNano() >= a.fresh {
		id, ok := st.openID(jar, sealed)
		if !ok {
			return nil, 0, nil
		}
		prev := a
		var err error
		if a, err = st.fetch(r.Context(), id, t); err != nil {
			return nil, 0, err
		}
		a.inheritAssertion(prev)
		a.sealed = strings.Clone(sealed)
		st.cache.put(a.sealed, a)
	}
	if a.session == nil {
		return nil, 0, nil
	}
	a, todo := a.check(st.p, t.Unix())
	return a, todo, nil
}

// openID returns the session id the cookie value seals.
func (st *serverStore) openID(jar *cookieJar, sealed string) (string, bool) {
	plain, err := st.p.sessionKeys.Open(jar.name, sealed)
	if err != nil || !validSessionID(plain) {
		st.p.debug("session cookie rejected", "reason", "cannot be opened (tampered, truncated, sealed with an unknown key, or from cookie mode)")
		return "", false
	}
	return string(plain), true
}

func validSessionID(b []byte) bool {
	if len(b) != sessionIDLength {
		return false
	}
	for _, c := range b {
		if !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// fetch reads a session from the backend. A missing, unreadable, expired
// or idle record is a negative entry (session nil), cached like any other
// so that a dead cookie does not cost a round trip per request; expired
// records are deleted on the way (storage has no TTL of its own).
func (st *serverStore) fetch(ctx context.Context, id string, t time.Time) (*activeSession, error) {
	if !st.health.allow() {
		return nil, errStoreDown
	}
	fresh := t.Add(st.cacheTTL).UnixNano()
	record, seen, err := st.backend.get(ctx, id)
	if errors.Is(err, errNotFound) {
		st.health.report(st.p, st.backend.kind(), nil)
		return &activeSession{id: id, fresh: fresh}, nil
	}
	st.health.report(st.p, st.backend.kind(), err)
	if err != nil {
		return nil, storeError("read", err)
	}
	s, ok := st.openRecord(id, record)
	if !ok {
		return &activeSession{id: id, fresh: fresh}, nil
	}
	a := st.p.activate(s)
	a.id = id
	a.fresh = fresh
	if seen > a.seen.Load() {
		a.seen.Store(seen)
	}
	unix := t.Unix()
	idle := st.p.idleSeconds()
	if unix >= s.Expires || idle > 0 && unix-a.seen.Load() >= idle {
		if err := st.backend.delete(ctx, id, s.Subject); err != nil {
			st.p.debug("expired session record not deleted", "error", err.Error())
		}
		return &activeSession{id: id, fresh: fresh}, nil
	}
	return a, nil
}

func (st *serverStore) sealRecord(id string, s *session) (string, error) {
	plain, err := encodeSession(s)
	if err != nil {
		return "", err
	}
	return st.recordKeys.Seal(st.recordName(id), plain), nil
}

func (st *serverStore) openRecord(id, record string) (*session, bool) {
	plain, err := st.recordKeys.Open(st.recordName(id), record)
	if err != nil {
		// Sealed with a key no longer configured: the session is over.
		st.p.debug("session record rejected", "reason", "cannot be opened with the session keys")
		return nil, false
	}
	s, ok := decodeSession(plain)
	if !ok {
		st.p.debug("session record rejected", "reason", "malformed content")
	}
	return s, ok
}

// recordName binds a sealed record to its session id, so records cannot be
// swapped between keys, and to the provider and client, so that handlers
// for other providers sharing the store and the keys cannot use it.
func (st *serverStore) recordName(id string) string {
	return "record " + st.p.Issuer + " " + st.p.ClientID + " " + id
}

func (st *serverStore) create(ctx context.Context, w http.ResponseWriter, r *http.Request, jar *cookieJar, s *session) error {
	if !st.health.allow() {
		return errStoreDown
	}
	id := randomToken()
	record, err := st.sealRecord(id, s)
	if err != nil {
		return err
	}
	expires := time.Unix(s.Expires, 0)
	err = st.backend.create(ctx, id, s.Subject, record, s.LastSeen, expires)
	st.health.report(st.p, st.backend.kind(), err)
	if err != nil {
		return storeError("create", err)
	}
	// A session the browser still carried ends here: one browser, one
	// session (and no fixation of an old id).
	if old := jar.readSession(r); old != "" {
		if oldID, ok := st.openID(jar, old); ok {
			if err := st.backend.delete(ctx, oldID, ""); err != nil {
				st.p.debug("previous session not deleted", "error", err.Error())
			}
			st.cache.remove(old)
		}
	}
	sealed := st.p.sessionKeys.Seal(jar.name, []byte(id))
	jar.setSession(w, r, sealed, time.Until(expires))
	a := st.p.activate(s)
	a.id, a.sealed, a.fresh = id, sealed, now().Add(st.cacheTTL).UnixNano()
	st.cache.put(sealed, a)
	return nil
}

// touch writes the last use back, at most once per touch interval per
// session on this instance: the first request to see it due wins the swap.
// A failure is logged and otherwise ignored; the request has its session.
func (st *serverStore) touch(_ http.ResponseWriter, r *http.Request, _ *cookieJar, a *activeSession) {
	t := now().Unix()
	old := a.seen.Load()
	if t-old < touchInterval(st.p.idleSeconds()) || !a.seen.CompareAndSwap(old, t) {
		return
	}
	if !st.health.allow() {
		return
	}
	err := st.backend.touch(context.WithoutCancel(r.Context()), a.id, t)
	st.health.report(st.p, st.backend.kind(), err)
	if err != nil {
		st.p.debug("session idle timer not written back", "error", err.Error())
	}
}

func (st *serverStore) remove(ctx context.Context, w http.ResponseWriter, r *http.Request, jar *cookieJar) (*activeSession, error) {
	sealed := jar.readSession(r)
	if sealed == "" {
		jar.clearSession(w, r)
		return nil, nil
	}
	id, ok := st.openID(jar, sealed)
	if !ok {
		jar.clearSession(w, r)
		return nil, nil
	}
	a, err := st.fetch(ctx, id, now())
	if err != nil {
		return nil, err
	}
	subject := ""
	if a.session != nil {
		subject = a.Subject
	}
	err = st.backend.delete(ctx, id, subject)
	st.health.report(st.p, st.backend.kind(), err)
	if err != nil {
		return nil, storeError("delete", err)
	}
	st.cache.remove(sealed)
	jar.clearSession(w, r)
	if a.session == nil {
		return nil, nil
	}
	return a, nil
}

func (st *serverStore) flightKey(a *activeSession) string { return a.id }

func (st *serverStore) lock(ctx context.Context, a *activeSession) (func(), error) {
	if !st.health.allow() {
		return nil, errStoreDown
	}
	unlock, err := st.backend.lock(ctx, a.id)
	if !errors.Is(err, errLockTimeout) {
		st.health.report(st.p, st.backend.kind(), err)
	}
	if err != nil {
		return nil, storeError("lock", err)
	}
	return unlock, nil
}

// reload reads the session again, past the cache: another instance may
// have refreshed it while this one waited for the lock.
func (st *serverStore) reload(ctx context.Context, a *activeSession) (*activeSession, error) {
	na, err := st.fetch(ctx, a.id, now())
	if err != nil {
		return nil, err
	}
	na.sealed = a.sealed
	if na.sealed != "" {
		st.cache.put(na.sealed, na) // what this instance now knows
	}
	if na.session == nil {
		return nil, nil
	}
	return na, nil
}

func (st *serverStore) update(ctx context.Context, a *activeSession, s *session) (*activeSession, error) {
	record, err := st.sealRecord(a.id, s)
	if err != nil {
		return nil, err
	}
	ok, err := st.backend.update(ctx, a.id, record)
	st.health.report(st.p, st.backend.kind(), err)
	if err != nil {
		return nil, storeError("update", err)
	}
	if !ok {
		st.cache.remove(a.sealed)
		return nil, nil
	}
	na := st.p.activate(s)
	na.id, na.sealed, na.fresh = a.id, a.sealed, now().Add(st.cacheTTL).UnixNano()
	if seen := a.seen.Load(); seen > na.seen.Load() {
		na.seen.Store(seen)
	}
	if na.sealed != "" {
		st.cache.put(na.sealed, na)
	}
	return na, nil
}

// The browser's cookie holds only the id, which a refresh does not change.
func (st *serverStore) deliver(http.ResponseWriter, *http.Request, *cookieJar, *activeSession) {}

func (st *serverStore) discard(ctx context.Context, a *activeSession) error {
	err := st.backend.delete(ctx, a.id, a.Subject)
	st.health.report(st.p, st.backend.kind(), err)
	if a.sealed != "" {
		st.cache.remove(a.sealed)
	}
	if err != nil {
		return storeError("delete", err)
	}
	return nil
}

// forgetSubject drops the subject's sessions from this instance's cache
// (after an admin revocation).
func (st *serverStore) forgetSubject(subject string) {
	st.cache.removeIf(func(a *activeSession) bool { return a.session != nil && a.Subject == subject })
}

func (st *serverStore) close() { st.backend.close() }

// logStoreError logs a store failure met on a request.
func (p *PKCEAuth) logStoreError(r *http.Request, err error) {
	if c := p.logger.Check(zap.DebugLevel, "request needs the session store, which failed"); c != nil {
		c.Write(zap.Error(err), zap.String("remote_ip", remoteIP(r)))
	}
}
