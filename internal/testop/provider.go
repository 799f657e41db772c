// Package testop is an OpenID Connect provider for tests. It serves discovery,
// JWKS, authorization (auto-approving one configurable user), token, userinfo
// and end-session endpoints over real HTTP on 127.0.0.1, signs real tokens,
// and follows the standards strictly (PKCE S256 required, single-use codes,
// rotating refresh tokens with reuse detection, RFC 9207 iss parameter), so a
// relying party that works against it is doing things right.
//
// Misbehave switches it into the failure modes relying parties must survive,
// in the spirit of the OpenID RP certification tests.
package testop

import (
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"
)

// Endpoint paths, relative to Issuer().
const (
	DiscoveryPath  = "/.well-known/openid-configuration"
	AuthorizePath  = "/authorize"
	TokenPath      = "/token"
	UserinfoPath   = "/userinfo"
	JWKSPath       = "/jwks"
	EndSessionPath = "/end_session"
)

// Defaults applied by New to zero-valued Config fields.
const (
	DefaultClientID   = "test-client"
	DefaultSigningAlg = "RS256"
	DefaultTokenTTL   = 5 * time.Minute
	DefaultCodeTTL    = 60 * time.Second
)

// Config describes the provider and its one registered client. The zero value
// is a working provider with a public client "test-client" signing RS256.
//
// PKCE S256 is always required; Misbehaviour.AcceptWithoutPKCE is the one
// way to relax that.
type Config struct {
	// ClientID of the registered client. Default "test-client".
	ClientID string
	// ClientSecret of the client. Empty means a public client that must not
	// authenticate (token_endpoint_auth_method "none"); otherwise the token
	// endpoint requires client_secret_basic or client_secret_post.
	ClientSecret string
	// RedirectURIs is the exact-match allow list for redirect_uri. Empty
	// accepts any absolute http(s) URI without a fragment.
	RedirectURIs []string
	// PostLogoutRedirectURIs is the exact-match allow list for
	// post_logout_redirect_uri. Empty accepts any absolute http(s) URI.
	PostLogoutRedirectURIs []string
	// SigningAlg for ID and access tokens: "RS256" (default), "PS256",
	// "ES256" or "EdDSA".
	SigningAlg string
	// IDTokenTTL is the ID token lifetime. Default 5 minutes.
	IDTokenTTL time.Duration
	// AccessTokenTTL is the access token lifetime (expires_in). Default 5 minutes.
	AccessTokenTTL time.Duration
	// CodeTTL is the authorization code lifetime. Default 60 seconds.
	CodeTTL time.Duration
	// Now is the provider's clock, for tests with a fake clock. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.SigningAlg == "" {
		c.SigningAlg = DefaultSigningAlg
	}
	if c.IDTokenTTL == 0 {
		c.IDTokenTTL = DefaultTokenTTL
	}
	if c.AccessTokenTTL == 0 {
		c.AccessTokenTTL = DefaultTokenTTL
	}
	if c.CodeTTL == 0 {
		c.CodeTTL = DefaultCodeTTL
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Provider is a running test OpenID provider. All methods are safe for
// concurrent use.
type Provider struct {
	t      testing.TB
	cfg    Config
	srv    *httptest.Server
	issuer string
	stop   chan struct{} // closed at cleanup, ends pending Delay sleeps

	mu      sync.Mutex
	keys    keyring
	users   map[string]User // by Subject: the provider's user directory
	current string          // Subject of the user who logs in next
	mis     Misbehaviour
	store   grantStore
	rec     records
}

// New starts a provider on 127.0.0.1 and stops it when the test ends.
func New(t testing.TB, cfg Config) *Provider {
	t.Helper()
	cfg = cfg.withDefaults()
	key, err := newSigningKey(cfg.SigningAlg, 0)
	if err != nil {
		t.Fatalf("testop: %v", err)
	}
	p := &Provider{
		t:     t,
		cfg:   cfg,
		stop:  make(chan struct{}),
		keys:  keyring{current: key, made: 1},
		users: map[string]User{},
		store: newGrantStore(),
	}
	p.setUserLocked(DefaultUser())
	// The issuer is known before the first request can arrive.
	p.srv = httptest.NewUnstartedServer(p.routes())
	p.issuer = "http://" + p.srv.Listener.Addr().String()
	p.srv.Start()
	t.Cleanup(func() {
		close(p.stop)
		p.srv.Close()
	})
	return p
}

// Issuer is the provider's issuer identifier (its base URL, no trailing slash).
func (p *Provider) Issuer() string { return p.issuer }

// ClientID is the registered client's ID (after defaults).
func (p *Provider) ClientID() string { return p.cfg.ClientID }

// SetUser stores u in the provider's user directory and makes u the user who
// logs in on the next authorization request. Tokens already issued to
// another Subject stay valid; refresh and userinfo answer with the latest
// claims stored for the grant's Subject.
func (p *Provider) SetUser(u User) {
	p.t.Helper()
	if u.Subject == "" {
		p.t.Fatalf("testop: SetUser: Subject is required")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setUserLocked(u)
}

func (p *Provider) setUserLocked(u User) {
	p.users[u.Subject] = u.clone()
	p.current = u.Subject
}

// Misbehave replaces the active misbehaviour switches; the zero Misbehaviour
// restores standard behaviour. It affects requests that arrive afterwards.
func (p *Provider) Misbehave(m Misbehaviour) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mis = m
}

func (p *Provider) misbehaviour() Misbehaviour {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mis
}

func (p *Provider) url(path string) string { return p.issuer + path }

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
