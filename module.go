// Package pkceauth is a Caddy v2 HTTP handler that puts whatever it wraps
// behind an OpenID Connect login using the authorization-code flow with PKCE
// (RFC 7636, S256), and checks the session on every request.
package pkceauth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-pkce/caddy-pkce/internal/seal"
)

func init() {
	caddy.RegisterModule(PKCEAuth{})
}

// PKCEAuth protects the routes it wraps with an OpenID Connect login that
// always uses PKCE. Requests with a valid session pass on to the next handler;
// browser navigations without one are sent to the provider's login; any other
// request without a session gets 401 with `WWW-Authenticate: Bearer`. With
// bearer, API clients authenticate with a JWT access token instead.
//
// For an authenticated request it sets these placeholders, usable by any
// later handler and by the `expression` matcher:
//
//	{http.auth.user.id}              the claim named by user_id_claim (default sub)
//	{http.auth.user.email}           the email claim
//	{http.auth.user.email_verified}  "true" or "false"
//	{http.auth.user.name}            the name claim
//	{http.auth.user.preferred_username}
//	{http.auth.user.groups}          the groups, comma-joined
//	{http.auth.user.claims.<name>}   any claim kept in the session (see claims)
//	{http.auth.user.provider}        the name of the provider that signed
//	                                 the request in (named providers only)
//
// Caddy's access log records {http.auth.user.id} as user_id.
//
// Errors (bad callback, provider unreachable, ...) are returned as
// caddyhttp.Error when the server has `handle_errors` routes, so those can
// style them; otherwise the handler writes a small built-in page (HTML for
// browsers, JSON for API clients).
type PKCEAuth struct {
	// The OpenID provider's issuer URL, compared byte for byte with the
	// `iss` of every ID token. Discovery reads
	// `<issuer>/.well-known/openid-configuration` unless discovery_url is set
	// or all of authorization_endpoint, token_endpoint and jwks_uri are set.
	// Required.
	Issuer string `json:"issuer,omitempty"`

	// Where to read the discovery document when it is not under the issuer
	// (for example an internal hostname): the full URL, ending in
	// /.well-known/openid-configuration. The document's issuer must still
	// equal Issuer. Default: the issuer's own well-known URL.
	DiscoveryURL string `json:"discovery_url,omitempty"`

	// Explicit endpoints, for providers without discovery or to override
	// what discovery says. When authorization_endpoint, token_endpoint and
	// jwks_uri are all set, discovery is skipped. Default: from discovery.
	AuthorizationEndpoint string `json:"authorization_endpoint,omitempty"`
	TokenEndpoint         string `json:"token_endpoint,omitempty"`
	UserinfoEndpoint      string `json:"userinfo_endpoint,omitempty"`
	JWKSURI               string `json:"jwks_uri,omitempty"`
	EndSessionEndpoint    string `json:"end_session_endpoint,omitempty"`

	// The client ID registered at the provider. Required.
	ClientID string `json:"client_id,omitempty"`

	// The client secret, for a confidential client. Leave empty for a public
	// client that authenticates with PKCE alone. Accepts `{env.*}` and
	// `{file.*}` placeholders. Default: none.
	ClientSecret string `json:"client_secret,omitempty"`

	// How the client authenticates at the token endpoint: `basic`
	// (client_secret_basic), `post` (client_secret_post) or `none`.
	// Default: `basic` when client_secret is set, else `none`.
	ClientAuthMethod string `json:"client_auth_method,omitempty"`

	// The scopes to request. `openid` is always included.
	// Default: `openid email profile`.
	Scopes []string `json:"scopes,omitempty"`

	// Extra parameters added to every authorization request, such as
	// `prompt`, `acr_values` or `audience`. Parameters the flow sets itself
	// (state, nonce, code_challenge, redirect_uri, ...) cannot be overridden.
	// Default: none.
	AuthParams map[string]string `json:"auth_params,omitempty"`

	// Query parameters copied from the request that started the login into
	// the authorization request, such as `login_hint` or `ui_locales`.
	// Default: none.
	ForwardAuthParams []string `json:"forward_auth_params,omitempty"`

	// The absolute redirect URI registered at the provider. Default: the
	// origin the browser used (https when the request came over TLS, from a
	// proxy listed in Caddy's trusted_proxies with X-Forwarded-Proto: https,
	// or with cookie_secure always) followed by callback_path. Setting it
	// pins the host instead of taking it from the request.
	RedirectURL string `json:"redirect_url,omitempty"`

	// `query` (default) or `form_post`. With form_post the provider POSTs
	// the callback cross-site, so the short-lived login cookie is sent with
	// SameSite=None (which needs HTTPS); the session cookie stays Lax.
	ResponseMode string `json:"response_mode,omitempty"`

	// The path of the redirect URI. Default: `/oauth2/callback`.
	CallbackPath string `json:"callback_path,omitempty"`

	// The path that ends the session. Default: `/oauth2/logout`.
	LogoutPath string `json:"logout_path,omitempty"`

	// The same-origin path to land on after logout. Its absolute form is
	// sent to the provider as post_logout_redirect_uri, so register it
	// there. Default: `/`.
	PostLogoutRedirect string `json:"post_logout_redirect,omitempty"`

	// How long a session lasts at most after login. Default: 12h.
	SessionLifetime caddy.Duration `json:"session_lifetime,omitempty"`

	// A session unused for this long ends. 0 uses the default; a negative
	// value disables the idle timeout. Default: 1h.
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`

	// How long a started login may take before its state expires.
	// Default: 10m.
	LoginTimeout caddy.Duration `json:"login_timeout,omitempty"`

	// How many logins (browser tabs) may be pending at once; the oldest is
	// dropped beyond that. Default: 5.
	MaxPendingLogins int `json:"max_pending_logins,omitempty"`

	// The session cookie's name. On HTTPS it gets the `__Host-` prefix (or
	// `__Secure-` when cookie_domain is set). Default: `pkce_session`.
	CookieName string `json:"cookie_name,omitempty"`

	// The cookie's Domain attribute, to share the session with subdomains.
	// Default: none (host-only).
	CookieDomain string `json:"cookie_domain,omitempty"`

	// The cookie's Path attribute. Anything but `/` drops the `__Host-`
	// prefix. Default: `/`.
	CookiePath string `json:"cookie_path,omitempty"`

	// The session cookie's SameSite attribute: `lax` or `none` (`none`
	// needs Secure cookies). `strict` is refused: the cookie would not be
	// sent on the redirect back from the provider. Default: `lax`.
	CookieSameSite string `json:"cookie_same_site,omitempty"`

	// When cookies get the Secure attribute: `auto` (when the request came
	// over TLS), `always` (for Caddy behind a TLS-terminating proxy) or
	// `never` (plain-HTTP development only). Default: `auto`.
	CookieSecure string `json:"cookie_secure,omitempty"`

	// Secrets that seal the cookies, each at least 32 characters. The first
	// seals, all open, so keys can be rotated by prepending a new one.
	// Accepts `{env.*}` and `{file.*}` placeholders. Default: a random key
	// generated once and kept in Caddy's configured storage, so restarts and
	// instances sharing that storage keep sessions.
	SessionKeys []string `json:"session_keys,omitempty"`

	// The claim that becomes {http.auth.user.id}. Default: `sub`.
	UserIDClaim string `json:"user_id_claim,omitempty"`

	// The claim, as a dotted path, that holds the user's groups or roles,
	// such as `realm_access.roles`. Arrays, objects (their keys) and
	// comma- or space-separated strings are accepted. Default: `groups`.
	GroupsClaim string `json:"groups_claim,omitempty"`

	// Extra claims (dotted paths) to keep in the session and expose as
	// {http.auth.user.claims.<name>}. The id, email, email_verified, name,
	// preferred_username and groups claims are always kept. Default: none.
	Claims []string `json:"claims,omitempty"`

	// The ID token signing algorithms accepted, intersected with those the
	// provider lists. Symmetric (HS*) algorithms and `none` are refused.
	// Default: RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA.
	SigningAlgs []string `json:"signing_algs,omitempty"`

	// The PKCE method: `S256`, or `plain` only for a provider that cannot do
	// S256. Default: `S256`.
	PKCEMethod string `json:"pkce_method,omitempty"`

	// Refuse to log in when the provider's discovery document lists
	// code_challenge_methods_supported without S256, instead of logging a
	// warning and sending S256 anyway. Default: false.
	RequireS256Discovery bool `json:"require_s256_discovery,omitempty"`

	// Fetch the userinfo endpoint after login and merge its claims (its
	// `sub` must equal the ID token's). Default: false.
	Userinfo bool `json:"userinfo,omitempty"`

	// Timeout for each call to the provider (discovery, token, userinfo,
	// keys). Default: 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Allowed clock difference with the provider when checking the ID
	// token's exp and iat. Default: 60s.
	ClockSkew caddy.Duration `json:"clock_skew,omitempty"`

	// Request headers set for the upstream from claims: header name to
	// claim (dotted path; arrays are comma-joined). Any client-supplied
	// header of the same name is always removed first. Default: none.
	Headers map[string]string `json:"headers,omitempty"`

	// Pass the module's own cookies on to the upstream. Default: false
	// (they are removed from the request).
	KeepCookies bool `json:"keep_cookies,omitempty"`

	// Where sessions are kept: the sealed cookie (default), Redis, or
	// Caddy's storage. See SessionConfig. Default: `{"store": "cookie"}`.
	Session *SessionConfig `json:"session,omitempty"`

	// Refresh the tokens with the refresh token before they expire, when
	// the provider issued one. Providers that issue refresh tokens only
	// for the `offline_access` scope need it in scopes (it is never added
	// by itself). false keeps the tokens of the login for the whole
	// session. Default: true.
	Refresh *bool `json:"refresh,omitempty"`

	// How long before the watched token's expiry a request triggers the
	// refresh (capped at half the token's lifetime). Default: 60s.
	RefreshLeeway caddy.Duration `json:"refresh_leeway,omitempty"`

	// Which token's expiry triggers the refresh: `access_token` or
	// `id_token`. Default: `access_token`.
	RefreshOn string `json:"refresh_on,omitempty"`

	// When a refresh fails because the provider cannot be reached (not
	// when it refuses), keep the session until its absolute expiry
	// instead of treating requests as signed out once the token has
	// expired. Default: false.
	KeepSessionWhenIdPDown bool `json:"keep_session_when_idp_down,omitempty"`

	// Pass the session's access token (refreshed as needed) to the
	// upstream in this request header: `Authorization` gets
	// `Bearer <token>`, any other header the bare token. A client-supplied
	// header of that name is always removed first. In cookie mode the
	// access token then travels in the cookie. Default: none (not passed).
	PassAccessToken string `json:"pass_access_token,omitempty"`

	// The names of providers declared in the `pkce` app (the global `pkce`
	// option of the Caddyfile) that this handler uses instead of settings
	// of its own. Such a handler takes only route settings (see
	// routeFields); the provider, its sessions and its cookie are shared
	// by every handler that names it. With several names, a request is
	// signed in by the first provider in the list whose session it
	// carries, and a browser without one gets a page to choose a provider.
	// Default: none (the provider is configured inline).
	Providers []string `json:"providers,omitempty"`

	// Authorization rules (access.go): a user gets in when no deny rule
	// matches and, if there are allow rules, at least one allow rule
	// matches; anyone else signed in gets 403 (never a new login). Each
	// rule is an AND of its conditions; the values of one condition are
	// alternatives. See Rule. Default: none (every signed-in user).
	Allow []Rule `json:"allow,omitempty"`
	Deny  []Rule `json:"deny,omitempty"`

	// Let email conditions of allow rules match addresses the provider
	// has not verified (email_verified missing or false), for providers
	// that never send email_verified (Entra ID). Default: false.
	AllowUnverifiedEmail bool `json:"allow_unverified_email,omitempty"`

	// Step-up: the session's login must have met one of these
	// authentication context classes (the ID token's `acr`). Sessions
	// that did not are sent to the provider again with `acr_values`
	// (API requests get 401, RFC 9470). Default: none.
	RequireACR []string `json:"require_acr,omitempty"`

	// Step-up: the session's login (the ID token's `auth_time`) must be
	// at most this old, give or take clock_skew; older sessions are sent
	// to the provider again with `max_age` (API requests get 401, RFC
	// 9470). Default: 0 (no limit).
	MaxAge caddy.Duration `json:"max_age,omitempty"`

	// Let requests without a valid session through, without a login or a
	// 401: with a session the identity placeholders and headers are set,
	// without one the placeholders are empty and client-supplied identity
	// headers are still removed. Cannot be combined with allow, deny,
	// require_acr or max_age. Default: false.
	PassUnauthenticated bool `json:"pass_unauthenticated,omitempty"`

	// Accept OAuth 2.0 bearer tokens (RFC 6750): JWT access tokens issued
	// by the same provider, in the Authorization header, checked as RFC
	// 9068 says, for API clients. A request carrying one is authenticated
	// by the token alone and never redirected. See BearerConfig.
	// Default: off (bearer tokens are not accepted).
	Bearer *BearerConfig `json:"bearer,omitempty"`

	// Requests matching any of these matcher sets are API calls: without a
	// session they get 401, never a redirect to the login. They are
	// checked before the built-in classification (see README, "How a
	// request is classified"). Default: none.
	APIMatchRaw caddyhttp.RawMatcherSets `json:"api_match,omitempty" caddy:"namespace=http.matchers"`

	// Requests matching any of these matcher sets are browser navigations
	// (redirected to the login without a session), unless the built-in
	// rules already found them to be a script's request: another method
	// than GET or HEAD, X-Requested-With, or Fetch Metadata saying so.
	// Use it for browsers that send neither Fetch Metadata nor text/html
	// in Accept. Default: none.
	NavigationMatchRaw caddyhttp.RawMatcherSets `json:"navigation_match,omitempty" caddy:"namespace=http.matchers"`

	// Send the upstream a short-lived signed identity assertion (an ES256
	// JWT) in a request header, and publish its keys as a JWK Set. See
	// AssertionConfig. Default: none.
	Assertion *AssertionConfig `json:"assertion,omitempty"`

	// The path that answers the signed-in user's identity as JSON (id,
	// sub, email, email_verified, name, preferred_username, groups, the
	// kept claims; never a token), or 401 JSON without a session; for
	// single-page apps. `off` (or "") disables it. Not to be confused with
	// userinfo, which reads the provider's userinfo at login.
	// Default: `/oauth2/userinfo`.
	UserinfoPath *string `json:"userinfo_path,omitempty"`

	// runtime state, built in Provision
	logger      *zap.Logger
	provider    *provider
	sessionKeys *seal.Keyring
	txnKeys     *seal.Keyring
	sessions    *sessionCache
	metrics     *metrics
	scopes      []string
	signingAlgs []string
	headerNames []string
	stdClaims   []string     // claims kept in session fields, not in Claims; see claimValue
	jars        [2]cookieJar // plain, secure
	events      eventEmitter
	stop        chan struct{}
	access      *accessPolicy // nil when no rule or step-up is configured

	// Named providers (providers.go): the provider-level instances this
	// handler serves, in order (p itself when configured inline); and,
	// on such an instance, its name, what its routes need kept, and how
	// its chooser link reads.
	cores           []*PKCEAuth
	headerClaims    []string // claims aligned with headerNames
	providerName    string
	displayName     string
	keepClaims      []string
	ruleClaimPaths  []string // claims the routes' rules read, kept as lists (access.go)
	keepAccessToken bool

	// identity endpoints and assertion (userinfo_endpoint.go, assertion.go)
	userinfoPath string
	assertion    *assertionSigner

	// sessions store and refresh (store.go, refresh.go)
	store            sessionStore
	server           *serverStore // the store when server-side, else nil
	refreshing       bool
	refreshLeeway    int64 // seconds
	refreshOnIDToken bool
	keepIDToken      bool // session.store_id_token with its default applied
	passBearer       bool
	refreshFlights   *flightGroup
	refreshResults   *resultCache

	// bearer tokens and request classification (bearer.go, classify.go)
	bearer          *bearerAuth
	apiMatch        caddyhttp.MatcherSets
	navigationMatch caddyhttp.MatcherSets
}

// CaddyModule returns the Caddy module information.
func (PKCEAuth) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.pkce_auth",
		New: func() caddy.Module { return new(PKCEAuth) },
	}
}

// Provision sets defaults, resolves secrets and starts discovery in the
// background. It does no network I/O that could fail the config load.
func (p *PKCEAuth) Provision(ctx caddy.Context) error {
	if len(p.Providers) > 0 {
		return p.provisionReferences(ctx)
	}
	if err := p.provisionCore(ctx, ctx.Logger()); err != nil {
		return err
	}
	p.cores = []*PKCEAuth{p}
	return p.provisionRoute(ctx)
}

// provisionCore provisions the provider-level part: what a named provider
// shares between all its handlers.
func (p *PKCEAuth) provisionCore(ctx caddy.Context, logger *zap.Logger) error {
	p.logger = logger
	repl := caddy.NewReplacer()

	p.ClientSecret = repl.ReplaceKnown(p.ClientSecret, "")
	p.setDefaults()

	keys, err := p.loadSessionKeys(ctx, repl)
	if err != nil {
		return err
	}
	if p.sessionKeys, err = seal.NewKeyring(keys, "session"); err != nil {
		return fmt.Errorf("session_keys: %v", err)
	}
	if p.txnKeys, err = seal.NewKeyring(keys, "transaction"); err != nil {
		return fmt.Errorf("session_keys: %v", err)
	}

	p.scopes = p.Scopes
	if !slices.Contains(p.scopes, "openid") {
		p.scopes = append([]string{"openid"}, p.scopes...)
	}
	p.signingAlgs = p.SigningAlgs
	p.stdClaims = slices.Compact(slices.Sorted(slices.Values([]string{
		"sub", "email", "email_verified", "name", "preferred_username", p.UserIDClaim, p.GroupsClaim})))
	p.buildJars()
	p.sessions = newSessionCache(sessionCacheSize)
	if err := p.provisionSessions(ctx, repl, keys); err != nil {
		return err
	}
	p.metrics = newMetrics(ctx)
	p.events = newEventEmitter(ctx, p.logger)
	p.stop = make(chan struct{})

	p.provider = newProvider(p, p.logger)
	go p.provider.warm(p.stop)
	return nil
}

func (p *PKCEAuth) setDefaults() {
	if len(p.Providers) > 0 {
		return // the named providers have theirs (app.go)
	}
	if len(p.Scopes) == 0 {
		p.Scopes = slices.Clone(defaultScopes)
	}
	if p.ClientAuthMethod == "" {
		p.ClientAuthMethod = "none"
		if p.ClientSecret != "" {
			p.ClientAuthMethod = "basic"
		}
	}
	if p.ResponseMode == "" {
		p.ResponseMode = "query"
	}
	if p.CallbackPath == "" {
		p.CallbackPath = defaultCallbackPath
	}
	if p.LogoutPath == "" {
		p.LogoutPath = defaultLogoutPath
	}
	if p.PostLogoutRedirect == "" {
		p.PostLogoutRedirect = "/"
	}
	if p.SessionLifetime == 0 {
		p.SessionLifetime = caddy.Duration(defaultSessionLifetime)
	}
	if p.IdleTimeout == 0 {
		p.IdleTimeout = caddy.Duration(defaultIdleTimeout)
	}
	if p.LoginTimeout == 0 {
		p.LoginTimeout = caddy.Duration(defaultLoginTimeout)
	}
	if p.MaxPendingLogins == 0 {
		p.MaxPendingLogins = defaultMaxPendingLogins
	}
	if p.CookieName == "" {
		p.CookieName = defaultCookieName
	}
	if p.CookiePath == "" {
		p.CookiePath = "/"
	}
	if p.CookieSameSite == "" {
		p.CookieSameSite = "lax"
	}
	if p.CookieSecure == "" {
		p.CookieSecure = "auto"
	}
	if p.UserIDClaim == "" {
		p.UserIDClaim = "sub"
	}
	if p.GroupsClaim == "" {
		p.GroupsClaim = "groups"
	}
	if len(p.SigningAlgs) == 0 {
		p.SigningAlgs = slices.Clone(defaultSigningAlgs)
	}
	if p.PKCEMethod == "" {
		p.PKCEMethod = "S256"
	}
	if p.Timeout == 0 {
		p.Timeout = caddy.Duration(defaultTimeout)
	}
	if p.ClockSkew == 0 {
		p.ClockSkew = caddy.Duration(defaultClockSkew)
	}
	if p.Session == nil {
		p.Session = new(SessionConfig)
	}
	if p.Session.Store == "" {
		p.Session.Store = storeCookie
	}
	if p.Session.CacheTTL == 0 {
		p.Session.CacheTTL = caddy.Duration(defaultStoreCacheTTL)
	}
	if p.Session.CacheSize == 0 {
		p.Session.CacheSize = defaultStoreCache
	}
	if p.Session.Redis != nil {
		p.Session.Redis.setDefaults()
	}
	if p.RefreshLeeway == 0 {
		p.RefreshLeeway = caddy.Duration(defaultRefreshLeeway)
	}
	if p.RefreshOn == "" {
		p.RefreshOn = refreshOnAccessToken
	}
	if p.Assertion != nil {
		p.Assertion.setDefaults()
	}
}

// loadSessionKeys returns the configured keys with placeholders resolved, or
// the key kept in Caddy's storage, generating it on first use.
func (p *PKCEAuth) loadSessionKeys(ctx caddy.Context, repl *caddy.Replacer) ([][]byte, error) {
	if len(p.SessionKeys) > 0 {
		keys := make([][]byte, 0, len(p.SessionKeys))
		for i, k := range p.SessionKeys {
			k = repl.ReplaceKnown(k, "")
			if len(k) < minKeyLength {
				return nil, fmt.Errorf("session_keys[%d]: must be at least %d characters after placeholders are resolved; generate one with `openssl rand -base64 32`", i, minKeyLength)
			}
			keys = append(keys, []byte(k))
		}
		return keys, nil
	}
	key, err := storedSessionKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("session key: no session_keys configured and the key in Caddy's storage could not be loaded or created: %v", err)
	}
	return [][]byte{key}, nil
}

// Validate checks the configuration without changing it.
func (p *PKCEAuth) Validate() error {
	if len(p.Providers) > 0 {
		return p.validateReferences()
	}
	if p.Issuer == "" {
		return errors.New("issuer is required (the provider's issuer URL, e.g. https://idp.example.com/realms/main)")
	}
	if err := checkURL("issuer", p.Issuer); err != nil {
		return err
	}
	for name, v := range map[string]string{
		"discovery_url":          p.DiscoveryURL,
		"authorization_endpoint": p.AuthorizationEndpoint,
		"token_endpoint":         p.TokenEndpoint,
		"userinfo_endpoint":      p.UserinfoEndpoint,
		"jwks_uri":               p.JWKSURI,
		"end_session_endpoint":   p.EndSessionEndpoint,
		"redirect_url":           p.RedirectURL,
	} {
		if v != "" {
			if err := checkURL(name, v); err != nil {
				return err
			}
		}
	}
	if p.DiscoveryURL != "" && !strings.HasSuffix(p.DiscoveryURL, wellKnownSuffix) {
		return fmt.Errorf("discovery_url must be the full URL of the discovery document, ending in %s", wellKnownSuffix)
	}
	if p.ClientID == "" && !p.bearerOnly() {
		return errors.New("client_id is required (the client ID registered at the provider)")
	}
	switch p.ClientAuthMethod {
	case "basic", "post":
		if p.ClientSecret == "" {
			return fmt.Errorf("client_auth_method %s needs a client_secret", p.ClientAuthMethod)
		}
	case "none":
		if p.ClientSecret != "" {
			return errors.New("client_auth_method none cannot be used with a client_secret; remove one of them")
		}
	default:
		return fmt.Errorf("client_auth_method must be basic, post or none, not %q", p.ClientAuthMethod)
	}
	if p.ResponseMode != "query" && p.ResponseMode != "form_post" {
		return fmt.Errorf("response_mode must be query or form_post, not %q", p.ResponseMode)
	}
	if p.ResponseMode == "form_post" && p.CookieSecure == "never" {
		return errors.New("response_mode form_post needs SameSite=None cookies, which browsers accept only with Secure; do not set cookie_secure never")
	}
	for name, v := range map[string]string{"callback_path": p.CallbackPath, "logout_path": p.LogoutPath} {
		if !strings.HasPrefix(v, "/") {
			return fmt.Errorf("%s must be a path starting with /, not %q", name, v)
		}
	}
	if p.CallbackPath == p.LogoutPath {
		return errors.New("callback_path and logout_path must differ")
	}
	if _, ok := safeReturnPath(p.PostLogoutRedirect); !ok {
		return fmt.Errorf("post_logout_redirect must be a same-origin path such as /goodbye, not %q", p.PostLogoutRedirect)
	}
	if p.SessionLifetime < 0 {
		return errors.New("session_lifetime must be positive")
	}
	if p.LoginTimeout < 0 {
		return errors.New("login_timeout must be positive")
	}
	if p.MaxPendingLogins < 1 || p.MaxPendingLogins > 20 {
		return fmt.Errorf("max_pending_logins must be between 1 and 20, not %d", p.MaxPendingLogins)
	}
	if !validCookieName(p.CookieName) {
		return fmt.Errorf("cookie_name %q is not a valid cookie name (letters, digits, - and _ only)", p.CookieName)
	}
	if !strings.HasPrefix(p.CookiePath, "/") {
		return fmt.Errorf("cookie_path must start with /, not %q", p.CookiePath)
	}
	if _, ok := sameSiteModes[strings.ToLower(p.CookieSameSite)]; !ok {
		return fmt.Errorf("cookie_same_site must be lax, strict or none, not %q", p.CookieSameSite)
	}
	if strings.EqualFold(p.CookieSameSite, "strict") {
		return errors.New("cookie_same_site strict cannot work: the browser arrives from the provider's site, so a Strict session cookie is not sent on the redirect back and the login loops; use lax (the default)")
	}
	if strings.EqualFold(p.CookieSameSite, "none") && p.CookieSecure == "never" {
		return errors.New("cookie_same_site none needs Secure cookies, which cookie_secure never forbids; browsers would drop the cookie")
	}
	switch p.CookieSecure {
	case "auto", "always", "never":
	default:
		return fmt.Errorf("cookie_secure must be auto, always or never, not %q", p.CookieSecure)
	}
	for _, alg := range p.SigningAlgs {
		if !slices.Contains(defaultSigningAlgs, alg) {
			if strings.HasPrefix(alg, "HS") || strings.EqualFold(alg, "none") {
				return fmt.Errorf("signing_algs: %s is not accepted: symmetric or unsigned ID tokens cannot be verified safely; configure the provider to sign with an asymmetric key (e.g. select a signing key in Authentik, RS256 in Auth0)", alg)
			}
			return fmt.Errorf("signing_algs: unknown algorithm %q (known: %s)", alg, strings.Join(defaultSigningAlgs, " "))
		}
	}
	if p.PKCEMethod != "S256" && p.PKCEMethod != "plain" {
		return fmt.Errorf("pkce_method must be S256 or plain, not %q", p.PKCEMethod)
	}
	if p.Timeout < 0 || p.ClockSkew < 0 {
		return errors.New("timeout and clock_skew must not be negative")
	}
	if err := p.validateRoute(); err != nil {
		return err
	}
	for _, name := range p.ForwardAuthParams {
		if reservedAuthParams[name] {
			return fmt.Errorf("forward_auth_params: %s is set by the login flow and cannot be forwarded", name)
		}
	}
	for name := range p.AuthParams {
		if reservedAuthParams[name] {
			return fmt.Errorf("auth_params: %s is set by the login flow and cannot be overridden", name)
		}
	}
	return p.validateSessions()
}

// Cleanup stops the background discovery of this config's instance.
func (p *PKCEAuth) Cleanup() error {
	if p.stop != nil {
		close(p.stop)
	}
	p.cleanupSessions()
	return nil
}

func checkURL(field, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%s must be an absolute http(s) URL, not %q", field, raw)
	}
	if u.Fragment != "" {
		return fmt.Errorf("%s must not have a #fragment", field)
	}
	return nil
}

func validCookieName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, c := range name {
		if !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func validHeaderName(name string) bool {
	return name != "" && http.CanonicalHeaderKey(name) != "" && !strings.ContainsAny(name, " \t\r\n:()<>@,;\\\"/[]?={}")
}

// randomString returns n random bytes, base64url-encoded.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics on failure since Go 1.24)
	return b
}

// reservedAuthParams are set by the login flow and never taken from config
// or from the request.
var reservedAuthParams = map[string]bool{
	"response_type": true, "client_id": true, "redirect_uri": true, "scope": true,
	"state": true, "nonce": true, "code_challenge": true, "code_challenge_method": true,
	"response_mode": true, "client_secret": true, "code_verifier": true, "request": true, "request_uri": true,
}

var sameSiteModes = map[string]http.SameSite{
	"lax":    http.SameSiteLaxMode,
	"strict": http.SameSiteStrictMode,
	"none":   http.SameSiteNoneMode,
}

// Defaults.
const (
	defaultCallbackPath     = "/oauth2/callback"
	defaultLogoutPath       = "/oauth2/logout"
	defaultCookieName       = "pkce_session"
	defaultSessionLifetime  = 12 * time.Hour
	defaultIdleTimeout      = time.Hour
	defaultLoginTimeout     = 10 * time.Minute
	defaultMaxPendingLogins = 5
	defaultTimeout          = 10 * time.Second
	defaultClockSkew        = 60 * time.Second
	minKeyLength            = 32
	sessionCacheSize        = 10000
)

var (
	defaultScopes      = []string{"openid", "email", "profile"}
	defaultSigningAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)

// Interface guards
var (
	_ caddy.Provisioner           = (*PKCEAuth)(nil)
	_ caddy.Validator             = (*PKCEAuth)(nil)
	_ caddy.CleanerUpper          = (*PKCEAuth)(nil)
	_ caddyhttp.MiddlewareHandler = (*PKCEAuth)(nil)
)
