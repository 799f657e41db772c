package pkceauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-pkce/caddy-pkce/internal/seal"
)

// SessionConfig chooses where sessions are kept.
type SessionConfig struct {
	// Where sessions live:
	//
	//   - `cookie`: the whole session, sealed (AES-256-GCM), in the
	//     browser's cookie. Needs no server; instances sharing
	//     session_keys share sessions; cannot be revoked before expiry.
	//   - `redis`: in Redis (single node, Sentinel or Cluster); the
	//     browser holds only a sealed 256-bit session id.
	//   - `caddy_storage`: in the storage Caddy is configured with (the
	//     file system by default), so instances that share certificates
	//     share sessions; the browser holds only a sealed session id.
	//
	// Default: `cookie`.
	Store string `json:"store,omitempty"`

	// How long an instance uses a session record it read from a
	// server-side store before reading it again. It bounds how long a
	// logout, revocation or refresh made on another instance may go
	// unseen here. A negative value reads the store on every request.
	// Ignored in cookie mode. Default: 5s.
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`

	// How many session records an instance keeps in that cache.
	// Default: 10000.
	CacheSize int `json:"cache_size,omitempty"`

	// The Redis connection, for store `redis`.
	Redis *RedisConfig `json:"redis,omitempty"`

	// Whether the session keeps the ID token, to send it as id_token_hint
	// when the user logs out (OpenID Connect RP-Initiated Logout). Without
	// it the logout request names the client with client_id instead, which
	// Keycloak, Auth0, Zitadel, Entra ID and Authentik accept (some then ask
	// the user to confirm); Okta requires the hint. In cookie mode the ID
	// token would travel with every request (about 1 KB more per request,
	// see docs/benchmarks.md), which is why the default differs.
	// Default: true with store redis or caddy_storage, false with cookie.
	StoreIDToken *bool `json:"store_id_token,omitempty"`
}

// Store names.
const (
	storeCookie       = "cookie"
	storeRedis        = "redis"
	storeCaddyStorage = "caddy_storage"
)

// sessionStore keeps sessions between requests. The cookie store keeps
// them in the sealed cookie itself; serverStore keeps them in Redis or in
// Caddy's storage (a backend) behind a sealed session id.
//
// Methods return an error only for a technical failure of the store
// (unreachable, timed out), never for a missing, forged or expired
// session, which is simply no session.
type sessionStore interface {
	// load returns the request's valid session, or nil, and what it needs
	// (idle timer write-back, refresh) before the request passes on.
	load(r *http.Request, jar *cookieJar) (a *activeSession, todo sessionTodo, err error)
	// create keeps a new session (after login) and sets the cookie.
	create(ctx context.Context, w http.ResponseWriter, r *http.Request, jar *cookieJar, s *session) error
	// touch records that a is in use now (sliding idle expiry).
	touch(w http.ResponseWriter, r *http.Request, jar *cookieJar, a *activeSession)
	// remove ends the request's session (logout) and clears the cookie.
	// It returns the session that was ended, if any.
	remove(ctx context.Context, w http.ResponseWriter, r *http.Request, jar *cookieJar) (*activeSession, error)

	// The refresh steps (refresh.go): flightKey names a in the
	// in-process single-flight; lock serialises refreshes of a across
	// instances; reload reads a's current state (nil when it ended);
	// update stores the refreshed s in place of a (nil when a ended
	// meanwhile); deliver sends a refreshed session to the browser;
	// discard ends a session whose refresh was refused.
	flightKey(a *activeSession) string
	lock(ctx context.Context, a *activeSession) (unlock func(), err error)
	reload(ctx context.Context, a *activeSession) (*activeSession, error)
	update(ctx context.Context, a *activeSession, s *session) (*activeSession, error)
	deliver(w http.ResponseWriter, r *http.Request, jar *cookieJar, a *activeSession)
	discard(ctx context.Context, a *activeSession) error

	// close releases what the store holds (connections, goroutines).
	close()
}

var (
	// errSessionTooLarge: the session does not fit in the cookies.
	errSessionTooLarge = errors.New("session too large for cookies")
	// errStoreDown marks failures of a server-side store; the request
	// gets 503.
	errStoreDown = errors.New("session store unavailable")
)

// storeError wraps a backend failure so that errors.Is(err, errStoreDown).
func storeError(op string, err error) error {
	return fmt.Errorf("%w: %s: %v", errStoreDown, op, err)
}

// provisionSessions sets up the session store and the refresh settings.
// It does no network I/O: a store that is down at start must not fail the
// config load.
func (p *PKCEAuth) provisionSessions(ctx caddy.Context, repl *caddy.Replacer, keys [][]byte) error {
	p.refreshing = p.Refresh == nil || *p.Refresh
	p.refreshLeeway = int64(time.Duration(p.RefreshLeeway) / time.Second)
	p.refreshOnIDToken = p.RefreshOn == refreshOnIDToken
	p.passBearer = p.PassAccessToken != "" && http.CanonicalHeaderKey(p.PassAccessToken) == "Authorization"
	p.refreshFlights = newFlightGroup()
	p.refreshResults = newResultCache(refreshResultLimit)

	cfg := p.Session
	p.keepIDToken = cfg.Store != storeCookie
	if cfg.StoreIDToken != nil {
		p.keepIDToken = *cfg.StoreIDToken
	}
	switch cfg.Store {
	case storeCookie:
		p.store = cookieStore{p}
		return nil
	case storeRedis, storeCaddyStorage:
	default:
		return fmt.Errorf("session: store must be cookie, redis or caddy_storage, not %q", cfg.Store)
	}

	recordKeys, err := seal.NewKeyring(keys, "record")
	if err != nil {
		return fmt.Errorf("session_keys: %v", err)
	}
	var b backend
	if cfg.Store == storeRedis {
		if cfg.Redis == nil {
			return errors.New("session: store redis needs a redis block with addresses (host:port of the node, the Sentinels or Cluster seeds)")
		}
		if err := cfg.Redis.validate(); err != nil {
			return err
		}
		b, err = newRedisBackend(cfg.Redis, repl, time.Duration(p.Timeout)+refreshLockMargin)
	} else {
		b, err = newStorageBackend(ctx, p.logger)
	}
	if err != nil {
		return err
	}
	ttl := time.Duration(cfg.CacheTTL)
	if ttl < 0 {
		ttl = 0
	}
	p.server = &serverStore{
		p:          p,
		backend:    b,
		recordKeys: recordKeys,
		cache:      newSessionCache(cfg.CacheSize),
		cacheTTL:   ttl,
	}
	p.store = p.server
	registerHandler(p)
	return nil
}

// validateSessions checks the session store and refresh settings.
func (p *PKCEAuth) validateSessions() error {
	if cfg := p.Session; cfg != nil {
		switch cfg.Store {
		case "", storeCookie, storeCaddyStorage:
			if cfg.Redis != nil {
				return fmt.Errorf("session: redis settings are given but the store is %s; set store to redis or remove them", cfg.Store)
			}
		case storeRedis:
			if cfg.Redis == nil {
				return errors.New("session: store redis needs a redis block with addresses (host:port of the node, the Sentinels or Cluster seeds)")
			}
			if err := cfg.Redis.validate(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("session: store must be cookie, redis or caddy_storage, not %q", cfg.Store)
		}
		if cfg.CacheSize < 0 {
			return errors.New("session: cache_size must not be negative")
		}
	}
	if p.RefreshLeeway < 0 {
		return errors.New("refresh_leeway must not be negative")
	}
	switch p.RefreshOn {
	case "", refreshOnAccessToken, refreshOnIDToken:
	default:
		return fmt.Errorf("refresh_on must be access_token or id_token, not %q", p.RefreshOn)
	}
	return nil
}

// cleanupSessions releases the store of an unloaded config.
func (p *PKCEAuth) cleanupSessions() {
	if p.server != nil {
		unregisterHandler(p)
	}
	if p.store != nil {
		p.store.close()
	}
}

// storeUnavailable answers a request that needs the session store while it
// is down. Nobody gets in; the page says to try again.
func (p *PKCEAuth) storeUnavailable(w http.ResponseWriter, r *http.Request) error {
	p.metrics.storeUnavailable()
	w.Header().Set("Retry-After", "5")
	return p.fail(w, r, http.StatusServiceUnavailable, "Session store unavailable",
		"Your session cannot be checked right now because the session store is unreachable. Please try again in a moment.")
}

// storeHealth tracks whether a server-side store answers, logs each
// transition once (down, then recovered), and while the store is down lets
// one request probe it per probe interval; the others fail at once instead
// of each waiting for a timeout.
type storeHealth struct {
	down      atomic.Bool
	nextProbe atomic.Int64 // unix nanoseconds
	mu        sync.Mutex   // orders the transition log lines
}

// storeProbeInterval is how often a down store is tried again.
const storeProbeInterval = 500 * time.Millisecond

// allow reports whether the store may be called now.
func (h *storeHealth) allow() bool {
	if !h.down.Load() {
		return true
	}
	t := time.Now().UnixNano()
	next := h.nextProbe.Load()
	return t >= next && h.nextProbe.CompareAndSwap(next, t+int64(storeProbeInterval))
}

// report records the outcome of a store call and announces each
// transition once: a log line and a Caddy event (pkce_store_down,
// pkce_store_recovered). Cancellations by the client say nothing about the
// store.
func (h *storeHealth) report(p *PKCEAuth, kind string, err error) {
	switch {
	case err == nil:
		if h.down.Load() {
			h.mu.Lock()
			if h.down.CompareAndSwap(true, false) {
				p.logger.Info("session store recovered", zap.String("store", kind))
				p.events.emit(context.Background(), "pkce_store_recovered", map[string]any{"store": kind, "issuer": p.Issuer})
			}
			h.mu.Unlock()
		}
	case errors.Is(err, context.Canceled):
	default:
		if !h.down.Load() {
			h.mu.Lock()
			if h.down.CompareAndSwap(false, true) {
				h.nextProbe.Store(time.Now().Add(storeProbeInterval).UnixNano())
				p.logger.Error("session store unreachable; requests that need it get 503 until it recovers",
					zap.String("store", kind), zap.Error(err))
				p.events.emit(context.Background(), "pkce_store_down", map[string]any{"store": kind, "issuer": p.Issuer})
			}
			h.mu.Unlock()
		}
	}
}

// handlers are the provisioned pkce_auth handlers with a server-side store,
// for the admin API (admin.go): registered in Provision, removed in Cleanup.
var handlers = struct {
	sync.Mutex
	m map[*PKCEAuth]struct{}
}{m: map[*PKCEAuth]struct{}{}}

func registerHandler(p *PKCEAuth) {
	handlers.Lock()
	handlers.m[p] = struct{}{}
	handlers.Unlock()
}

func unregisterHandler(p *PKCEAuth) {
	handlers.Lock()
	delete(handlers.m, p)
	handlers.Unlock()
}

// serverHandlers returns the registered handlers.
func serverHandlers() []*PKCEAuth {
	handlers.Lock()
	defer handlers.Unlock()
	out := make([]*PKCEAuth, 0, len(handlers.m))
	for p := range handlers.m {
		out = append(out, p)
	}
	return out
}

// Defaults of the session store.
const (
	defaultStoreCacheTTL = 5 * time.Second
	defaultStoreCache    = 10000
	// refreshLockMargin is added to the provider timeout for the
	// cross-instance refresh lock's lifetime.
	refreshLockMargin = 5 * time.Second
)
