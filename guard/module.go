// Package pkceguard is a Caddy v2 HTTP handler, `pkce_guard`, that enforces
// PKCE (RFC 7636) in front of an OAuth 2.0 authorization server which does
// not enforce it itself: older in-house servers, and products where PKCE is
// optional per client. Placed before `reverse_proxy` to that server, it
//
//   - refuses authorization requests for the code flow that carry no
//     `code_challenge`, an unlisted `code_challenge_method`, or a malformed
//     challenge (RFC 6749 §4.1.2.1);
//   - remembers the challenge of each accepted request, in a sealed cookie on
//     the server's own origin and under the request's `state`;
//   - binds the authorization code of the server's redirect back to the
//     client to that challenge;
//   - refuses token requests for that code whose `code_verifier` does not
//     match, without contacting the server (RFC 6749 §5.2, RFC 7636 §4.6);
//   - advertises the allowed methods in the server's discovery documents.
//
// See README.md in this directory for the threat it closes and examples.
package pkceguard

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-pkce/caddy-pkce/internal/seal"
)

func init() {
	caddy.RegisterModule(Guard{})
}

// Guard enforces PKCE for every client of the authorization server that it
// is placed in front of, typically right before `reverse_proxy`. It refuses
// authorization requests without a valid code challenge, binds each issued
// authorization code to the challenge of the request that obtained it, and
// refuses token requests whose code_verifier does not match that challenge.
// The upstream server never sees a refused request.
//
// A refused authorization request is answered with a redirect carrying
// `error=invalid_request` only when its redirect_uri is listed in
// redirect_uris for its client_id; otherwise with a 400 page (or, when the
// server has `handle_errors` routes, a caddyhttp error with status 400). A
// refused token request is answered with `400 {"error":"invalid_grant",...}`
// and `Cache-Control: no-store`.
//
// Refusals are counted in the metric
// `caddy_pkce_guard_refusals_total{reason="..."}` and logged at info level
// with the reason; codes, verifiers and challenges are never logged.
type Guard struct {
	// URL paths of the server's authorization endpoint. A request to one of
	// them that carries a `response_type` parameter is an authorization
	// request. `*` matches any run of characters, `/` included. Paths are
	// compared after normalization: case-insensitive, `.` and `..` segments
	// resolved, repeated and trailing slashes ignored, `;params` removed.
	// Default: Keycloak (`*/realms/*/protocol/openid-connect/auth`), Dex
	// (`/dex/auth*`), generic (`/authorize`, `/oauth/authorize`,
	// `/oauth2/authorize`).
	AuthorizationPaths []string `json:"authorization_paths,omitempty"`

	// URL paths of the server's token endpoint, matched like
	// authorization_paths. Default: Keycloak
	// (`*/realms/*/protocol/openid-connect/token`), Dex (`/dex/token`),
	// generic (`/token`, `/oauth/token`, `/oauth2/token`).
	TokenPaths []string `json:"token_paths,omitempty"`

	// URL paths of the server's discovery documents, whose
	// `code_challenge_methods_supported` is replaced by methods. Matched
	// like authorization_paths. Default:
	// `*/.well-known/openid-configuration` and
	// `/.well-known/oauth-authorization-server*`.
	DiscoveryPaths []string `json:"discovery_paths,omitempty"`

	// The code_challenge_method values accepted: `S256`, and `plain` only
	// when listed. Default: `["S256"]`.
	Methods []string `json:"methods,omitempty"`

	// The shortest code_verifier accepted, in characters. RFC 7636 §4.1
	// allows 43 to 128. Default: 43.
	MinVerifierLength int `json:"min_verifier_length,omitempty"`

	// The longest code_verifier accepted, in characters, at most 128.
	// Default: 128.
	MaxVerifierLength int `json:"max_verifier_length,omitempty"`

	// client_id values for which PKCE is optional: their authorization
	// requests without a code challenge pass, and so do token requests for
	// codes obtained that way. A challenge they do send is still checked
	// and enforced. Logged when the handler starts. Default: none.
	ExemptClients []string `json:"exempt_clients,omitempty"`

	// Lets confidential clients skip PKCE, which RFC 9700 §2.1.1 advises
	// against (PKCE also stops code injection against them). When true,
	// authorization requests without a challenge pass, and a token request
	// for a code that has no challenge passes only if it carries client
	// credentials (HTTP Basic, client_secret or client_assertion). The
	// guard cannot check those credentials: the server must reject
	// credentials sent by public clients. Default: false.
	ConfidentialWithoutPKCE bool `json:"confidential_without_pkce,omitempty"`

	// Redirect URIs trusted per client_id, compared as exact strings. A
	// refused authorization request is redirected to its redirect_uri with
	// the error only when that URI is listed here for its client; otherwise
	// it gets a 400 page. A client with exactly one URI here may also omit
	// redirect_uri in its authorization requests. Default: none.
	RedirectURIs map[string][]string `json:"redirect_uris,omitempty"`

	// How long an accepted authorization request is remembered (through
	// the server's login pages) and how long an issued code stays bound to
	// its challenge. Default: 10m.
	BindingLifetime caddy.Duration `json:"binding_lifetime,omitempty"`

	// Secrets, at least 32 characters each, that seal the cookie
	// remembering an authorization request in the browser. The first
	// seals, all open (rotation). Accepts `{env.*}` and `{file.*}`
	// placeholders. Instances behind one load balancer need the same keys.
	// Default: a random key created once in Caddy's storage under
	// `pkce_guard/cookie_key`, shared by every instance using that storage.
	CookieKeys []string `json:"cookie_keys,omitempty"`

	// Where bindings are kept: `memory` (this instance only), `redis`, or
	// `storage` (Caddy's configured storage). Use redis or storage when
	// several Caddy instances serve the server. Default: memory.
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=http.handlers.pkce_guard.stores inline_key=type"`

	store          Store
	authPaths      []string
	tokenPaths     []string
	discoveryPaths []string
	cookieSecrets  [][]byte
	ctx            caddy.Context
	keys           *lazyKeyring
	metrics        *metrics
	logger         *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Guard) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.pkce_guard",
		New: func() caddy.Module { return new(Guard) },
	}
}

// Provision sets defaults, resolves placeholders in the cookie keys and loads
// the store. It does no network I/O.
func (g *Guard) Provision(ctx caddy.Context) error {
	g.logger = ctx.Logger()

	if len(g.AuthorizationPaths) == 0 {
		g.AuthorizationPaths = slices.Clone(defaultAuthorizationPaths)
	}
	if len(g.TokenPaths) == 0 {
		g.TokenPaths = slices.Clone(defaultTokenPaths)
	}
	if len(g.DiscoveryPaths) == 0 {
		g.DiscoveryPaths = slices.Clone(defaultDiscoveryPaths)
	}
	if len(g.Methods) == 0 {
		g.Methods = []string{methodS256}
	}
	if g.MinVerifierLength == 0 {
		g.MinVerifierLength = minVerifierLength
	}
	if g.MaxVerifierLength == 0 {
		g.MaxVerifierLength = maxVerifierLength
	}
	if g.BindingLifetime == 0 {
		g.BindingLifetime = caddy.Duration(defaultBindingLifetime)
	}
	g.authPaths = compilePatterns(g.AuthorizationPaths)
	g.tokenPaths = compilePatterns(g.TokenPaths)
	g.discoveryPaths = compilePatterns(g.DiscoveryPaths)

	repl := caddy.NewReplacer()
	g.cookieSecrets = nil
	for _, k := range g.CookieKeys {
		g.cookieSecrets = append(g.cookieSecrets, []byte(repl.ReplaceKnown(k, "")))
	}
	g.ctx = ctx
	g.keys = new(lazyKeyring)

	if g.StoreRaw == nil {
		g.StoreRaw = json.RawMessage(`{"type":"memory"}`)
	}
	mod, err := ctx.LoadModule(g, "StoreRaw")
	if err != nil {
		return fmt.Errorf("loading pkce_guard store: %w", err)
	}
	g.store = mod.(Store)

	g.metrics, err = newMetrics(ctx.GetMetricsRegistry())
	if err != nil {
		return err
	}

	if len(g.ExemptClients) > 0 {
		if c := g.logger.Check(zapcore.InfoLevel, "clients exempt from PKCE: their requests without a code challenge pass"); c != nil {
			c.Write(zap.Strings("client_ids", g.ExemptClients))
		}
	}
	if g.ConfidentialWithoutPKCE {
		if c := g.logger.Check(zapcore.WarnLevel, "confidential clients may skip PKCE (confidential_without_pkce); RFC 9700 advises against it"); c != nil {
			c.Write()
		}
	}
	if slices.Contains(g.Methods, methodPlain) {
		if c := g.logger.Check(zapcore.WarnLevel, "code_challenge_method plain is allowed; it does not protect a code whose authorization request was observed (RFC 7636 §7.2)"); c != nil {
			c.Write()
		}
	}
	return nil
}

// Validate checks the configuration without changing it.
func (g *Guard) Validate() error {
	if len(g.Methods) == 0 {
		return errors.New("pkce_guard: methods must list at least one code_challenge_method (S256)")
	}
	for _, m := range g.Methods {
		if m != methodS256 && m != methodPlain {
			return fmt.Errorf("pkce_guard: methods: unknown code_challenge_method %q; use S256 (or plain, not recommended)", m)
		}
	}
	if g.MinVerifierLength < minVerifierLength || g.MinVerifierLength > maxVerifierLength {
		return fmt.Errorf("pkce_guard: min_verifier_length %d is outside %d..%d (RFC 7636 §4.1)", g.MinVerifierLength, minVerifierLength, maxVerifierLength)
	}
	if g.MaxVerifierLength < g.MinVerifierLength || g.MaxVerifierLength > maxVerifierLength {
		return fmt.Errorf("pkce_guard: max_verifier_length %d must be between min_verifier_length %d and %d (RFC 7636 §4.1)", g.MaxVerifierLength, g.MinVerifierLength, maxVerifierLength)
	}
	if g.BindingLifetime <= 0 {
		return fmt.Errorf("pkce_guard: binding_lifetime %s must be positive", time.Duration(g.BindingLifetime))
	}
	for name, paths := range map[string][]string{"authorization_paths": g.AuthorizationPaths, "token_paths": g.TokenPaths, "discovery_paths": g.DiscoveryPaths} {
		for _, p := range paths {
			if !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "*") {
				return fmt.Errorf("pkce_guard: %s: %q must start with / or *", name, p)
			}
		}
	}
	for i, k := range g.cookieSecrets {
		if len(k) < seal.MinSecretLen {
			return fmt.Errorf("pkce_guard: cookie_keys[%d] is %d characters after placeholders, need at least %d random characters", i, len(k), seal.MinSecretLen)
		}
	}
	for _, client := range slices.Sorted(maps.Keys(g.RedirectURIs)) {
		if client == "" {
			return errors.New("pkce_guard: redirect_uris: a client_id is empty")
		}
		if len(g.RedirectURIs[client]) == 0 {
			return fmt.Errorf("pkce_guard: redirect_uris: client %q lists no URI", client)
		}
		for _, raw := range g.RedirectURIs[client] {
			if err := checkRedirectURI(raw); err != nil {
				return fmt.Errorf("pkce_guard: redirect_uris: client %q: %v", client, err)
			}
		}
	}
	for i, c := range g.ExemptClients {
		if c == "" {
			return fmt.Errorf("pkce_guard: exempt_clients[%d] is empty", i)
		}
	}
	return nil
}

// ServeHTTP dispatches to the authorization, token or discovery handling by
// path, and watches every other response of the server for a redirect that
// delivers an authorization code.
func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	p := normalizePath(r.URL.Path)
	switch {
	case matchAny(g.tokenPaths, p):
		return g.serveToken(w, r, next)
	case matchAny(g.authPaths, p):
		return g.serveAuthorization(w, r, next)
	case r.Method == http.MethodGet && matchAny(g.discoveryPaths, p):
		return g.serveDiscovery(w, r, next)
	}
	return next.ServeHTTP(g.capture(w, r, nil), r)
}

// exempt reports whether PKCE is optional for clientID.
func (g *Guard) exempt(clientID string) bool {
	return clientID != "" && slices.Contains(g.ExemptClients, clientID)
}

// trustedRedirect reports whether redirectURI is listed for clientID.
func (g *Guard) trustedRedirect(clientID, redirectURI string) bool {
	return redirectURI != "" && slices.Contains(g.RedirectURIs[clientID], redirectURI)
}

// cookieKeyring returns the keyring sealing the pending-request cookies,
// reading or creating the shared random key in Caddy's storage the first
// time when no cookie_keys are configured. A failure is not cached, so the
// next request tries again.
func (g *Guard) cookieKeyring(ctx context.Context) (*seal.Keyring, error) {
	g.keys.mu.Lock()
	defer g.keys.mu.Unlock()
	if g.keys.keyring != nil {
		return g.keys.keyring, nil
	}
	secrets := g.cookieSecrets
	if len(secrets) == 0 {
		secret, err := loadOrCreateCookieKey(ctx, g.ctx.Storage())
		if err != nil {
			return nil, err
		}
		secrets = [][]byte{secret}
	}
	kr, err := seal.NewKeyring(secrets, sealPurpose)
	if err != nil {
		return nil, err
	}
	g.keys.keyring = kr
	return kr, nil
}

// lazyKeyring is the cookie keyring, made on first use.
type lazyKeyring struct {
	mu      sync.Mutex
	keyring *seal.Keyring
}

// loadOrCreateCookieKey reads the random cookie key from storage, creating
// it under a storage lock if no instance has yet.
func loadOrCreateCookieKey(ctx context.Context, storage certmagic.Storage) ([]byte, error) {
	if storage == nil {
		return nil, errors.New("pkce_guard: no Caddy storage for the cookie key; set cookie_keys")
	}
	decode := func(b []byte) ([]byte, error) {
		key, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(key) < seal.MinSecretLen {
			return nil, fmt.Errorf("pkce_guard: storage key %s is corrupt; delete it to have a new one created, or set cookie_keys", cookieKeyStorageKey)
		}
		return key, nil
	}
	if b, err := storage.Load(ctx, cookieKeyStorageKey); err == nil {
		return decode(b)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("pkce_guard: reading %s from storage: %w", cookieKeyStorageKey, err)
	}
	if err := storage.Lock(ctx, cookieKeyLockName); err != nil {
		return nil, fmt.Errorf("pkce_guard: locking storage to create %s: %w", cookieKeyStorageKey, err)
	}
	defer func() { _ = storage.Unlock(context.WithoutCancel(ctx), cookieKeyLockName) }()
	// Another instance may have created it while we waited for the lock.
	if b, err := storage.Load(ctx, cookieKeyStorageKey); err == nil {
		return decode(b)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("pkce_guard: reading %s from storage: %w", cookieKeyStorageKey, err)
	}
	key := make([]byte, cookieKeySize)
	_, _ = rand.Read(key)
	if err := storage.Store(ctx, cookieKeyStorageKey, []byte(base64.RawURLEncoding.EncodeToString(key))); err != nil {
		return nil, fmt.Errorf("pkce_guard: writing %s to storage: %w", cookieKeyStorageKey, err)
	}
	return key, nil
}

// checkRedirectURI reports why raw cannot be a redirect URI: RFC 6749 §3.1.2
// requires an absolute URI without a fragment.
func checkRedirectURI(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URI: %v", raw, err)
	}
	if u.Scheme == "" {
		return fmt.Errorf("%q is not absolute (RFC 6749 §3.1.2)", raw)
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return fmt.Errorf("%q has a fragment (RFC 6749 §3.1.2)", raw)
	}
	return nil
}

// Defaults and limits.
const (
	methodS256  = "S256"
	methodPlain = "plain"

	// RFC 7636 §4.1.
	minVerifierLength = 43
	maxVerifierLength = 128

	defaultBindingLifetime = 10 * time.Minute

	// The largest authorization or token request body the guard reads;
	// such requests are a few hundred bytes.
	maxFormBody = 64 << 10

	cookieKeyStorageKey = "pkce_guard/cookie_key"
	cookieKeyLockName   = "pkce_guard_cookie_key"
	cookieKeySize       = 32
	sealPurpose         = "pkce_guard pending authorization request"
)

var (
	defaultAuthorizationPaths = []string{
		"*/realms/*/protocol/openid-connect/auth",
		"/dex/auth*",
		"/authorize",
		"/oauth/authorize",
		"/oauth2/authorize",
	}
	defaultTokenPaths = []string{
		"*/realms/*/protocol/openid-connect/token",
		"/dex/token",
		"/token",
		"/oauth/token",
		"/oauth2/token",
	}
	defaultDiscoveryPaths = []string{
		"*/.well-known/openid-configuration",
		"/.well-known/oauth-authorization-server*",
	}
)

// Interface guards
var (
	_ caddy.Provisioner           = (*Guard)(nil)
	_ caddy.Validator             = (*Guard)(nil)
	_ caddyhttp.MiddlewareHandler = (*Guard)(nil)
)
