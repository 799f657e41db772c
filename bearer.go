package pkceauth

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// BearerConfig makes pkce_auth a resource server for API clients as well:
// a request with `Authorization: Bearer <token>` is authenticated by that
// token, a JWT access token (RFC 9068) issued by the configured provider,
// and never redirected. The checks: the signature with the provider's
// keys (jwks_uri) and an algorithm from signing_algs that the provider
// lists (never `none`, never HMAC); `iss` equal to issuer, byte for byte;
// `aud` containing one of audiences; `exp` (required), `nbf` and `iat`
// within clock_skew; the required scopes; optionally the `typ` header.
//
// A request with a bearer token is judged by the token alone: a valid
// token passes whatever cookies the request carries, an invalid one gets
// 401 even when the request also has a valid session cookie. A request
// without one is handled as before (session cookie, login redirect for
// navigations, 401 for the rest), unless only is set.
//
// Rejections follow RFC 6750: 401 with `WWW-Authenticate: Bearer` and
// error="invalid_token" (no error code when the request carried no token),
// 400 error="invalid_request" for a malformed Authorization header, 403
// error="insufficient_scope" when a required scope is missing. The token
// sets the same {http.auth.user.*} placeholders and headers as a session,
// from its own claims. It is never logged.
type BearerConfig struct {
	// The audiences accepted: the token's `aud` must contain at least one
	// of them (RFC 9068 §4), such as the API's identifier at the provider
	// (`https://api.example.com`, `api://my-api`). Required: the client_id
	// is not assumed, because the site's own ID tokens carry it as their
	// audience and would otherwise pass as access tokens.
	Audiences []string `json:"audiences,omitempty"`

	// Scopes the token must all carry, in its `scope` claim (a
	// space-separated string, RFC 9068) or `scp` claim (an array or a
	// space-separated string, as Okta and Entra ID send). A token lacking
	// one gets 403 insufficient_scope. Default: none.
	RequiredScopes []string `json:"required_scopes,omitempty"`

	// Require the JWS header `typ: at+jwt` (or `application/at+jwt`) of
	// RFC 9068, which tells an access token from an ID token signed with
	// the same keys. Enable it when the provider sets it (Auth0, Okta,
	// Authelia, ...; Keycloak and Entra ID do not). Default: false.
	RequireATJWT bool `json:"require_at_jwt,omitempty"`

	// Accept bearer tokens only: no session cookie is read, no login is
	// started, the callback and logout paths are not served, and every
	// request without a valid token gets 401. client_id is then optional.
	// Default: false (a bearer token or a session).
	Only bool `json:"only,omitempty"`

	// The largest token accepted, in bytes; a larger one gets 401
	// invalid_token without being parsed. Default: 16384.
	MaxTokenSize int `json:"max_token_size,omitempty"`

	// How many verified tokens are remembered (until they expire), so that
	// a repeated token costs no signature check. Default: 10000.
	CacheSize int `json:"cache_size,omitempty"`

	// Publish RFC 9728 protected resource metadata and point clients to it
	// from the WWW-Authenticate challenge (resource_metadata). Default:
	// not published.
	ResourceMetadata *ResourceMetadata `json:"resource_metadata,omitempty"`
}

// bearerAuth is the runtime state of bearer mode.
type bearerAuth struct {
	core     *PKCEAuth // the provider that issues the tokens: the route's first
	cfg      *BearerConfig
	scope    string // required scopes, space-separated, for challenges
	cache    *tokenCache
	keys     *bearerKeys
	metadata *resourceMetadata // nil when not published
}

// Bearer defaults and limits.
const (
	defaultMaxTokenSize = 16 << 10
	maxMaxTokenSize     = 1 << 20
	defaultTokenCache   = 10000
)

// bearerOnly reports whether only bearer tokens are accepted.
func (p *PKCEAuth) bearerOnly() bool {
	return p.Bearer != nil && p.Bearer.Only
}

// provisionBearer sets bearer mode up, without network I/O: the keys are
// fetched on the first token. Bearer mode is a route setting; the tokens
// are those of the route's (first) provider.
func (p *PKCEAuth) provisionBearer() {
	cfg := p.Bearer
	if cfg == nil {
		return
	}
	c := p.cores[0]
	if cfg.MaxTokenSize == 0 {
		cfg.MaxTokenSize = defaultMaxTokenSize
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = defaultTokenCache
	}
	b := &bearerAuth{
		core:  c,
		cfg:   cfg,
		scope: strings.Join(cfg.RequiredScopes, " "),
		cache: newTokenCache(cfg.CacheSize),
		keys:  newBearerKeys(c.provider.client, p.logger),
	}
	if cfg.ResourceMetadata != nil {
		b.metadata = newResourceMetadata(c, cfg.ResourceMetadata, cfg.RequiredScopes)
	}
	p.bearer = b
	if slices.Contains(cfg.Audiences, c.ClientID) && !cfg.RequireATJWT {
		p.logger.Warn("bearer: audiences contains the client_id and require_at_jwt is off, so the ID tokens issued to this client are accepted as access tokens too; enable require_at_jwt if the provider marks access tokens with typ at+jwt",
			zap.String("client_id", c.ClientID))
	}
}

// validateBearer checks the bearer settings without changing them.
func (p *PKCEAuth) validateBearer() error {
	cfg := p.Bearer
	if cfg == nil {
		return nil
	}
	if cfg.Only && p.PassUnauthenticated {
		return errors.New("bearer: only answers 401 to every request without a token, so pass_unauthenticated would never apply; use one of them")
	}
	if len(cfg.Audiences) == 0 {
		return errors.New("bearer: audiences is required: list the aud value(s) the provider puts into access tokens for this API (RFC 9068 §4); the client_id is not assumed, because ID tokens carry it too")
	}
	for i, a := range cfg.Audiences {
		if a == "" {
			return fmt.Errorf("bearer: audiences[%d] is empty", i)
		}
	}
	for _, s := range cfg.RequiredScopes {
		if !validScopeToken(s) {
			return fmt.Errorf("bearer: required_scopes: %q is not a valid scope (RFC 6749 §3.3: printable ASCII without space, \" or \\)", s)
		}
	}
	if cfg.MaxTokenSize < 0 || cfg.MaxTokenSize > maxMaxTokenSize {
		return fmt.Errorf("bearer: max_token_size must be between 1 and %d bytes, not %d", maxMaxTokenSize, cfg.MaxTokenSize)
	}
	if cfg.CacheSize < 0 {
		return fmt.Errorf("bearer: cache_size must not be negative, not %d", cfg.CacheSize)
	}
	return cfg.ResourceMetadata.validate()
}

// validScopeToken is RFC 6749's scope-token: 1*( %x21 / %x23-5B / %x5D-7E ).
// It also keeps the value safe inside a quoted WWW-Authenticate parameter.
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// serveBearer is bearer mode's part of ServeHTTP. It reports done=false
// when the request is left to the session flow: bearer mode is off, or the
// request carries no bearer token and tokens are not the only way in.
func (p *PKCEAuth) serveBearer(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) (done bool, err error) {
	b := p.bearer
	if b.metadata != nil && b.metadata.matches(r) {
		return true, b.metadata.serve(w, r)
	}
	token, status, desc := parseAuthorization(r.Header["Authorization"], b.cfg.MaxTokenSize)
	switch {
	case status == http.StatusBadRequest:
		return true, p.rejectBearer(w, r, http.StatusBadRequest, "invalid_request", desc, desc)
	case status != 0:
		return true, p.rejectBearer(w, r, status, "invalid_token", desc, desc)
	case token == "":
		if !b.cfg.Only {
			return false, nil
		}
		w.Header().Set("WWW-Authenticate", p.bearerChallenge(r, "", ""))
		return true, p.fail(w, r, http.StatusUnauthorized, "Authentication required",
			"This resource needs an access token in the Authorization header (Bearer).")
	}

	a, f := p.verifyBearer(r.Context(), token)
	if f != nil {
		if f.status == http.StatusServiceUnavailable {
			p.debug("bearer token not checked", "reason", f.reason, "remote_ip", remoteIP(r))
			w.Header().Set("Retry-After", "10")
			return true, p.fail(w, r, http.StatusServiceUnavailable, "Identity provider unreachable",
				"The access token cannot be checked because the identity provider cannot be reached. Please try again in a moment.")
		}
		return true, p.rejectBearer(w, r, f.status, f.code, f.description, f.reason)
	}
	if p.access != nil {
		if refused, err := p.enforceBearerAccess(w, r, a); refused {
			return true, err
		}
	}
	// The token is the client's credential for this site; it reaches the
	// upstream only through pass_access_token, as a session's does.
	r.Header.Del("Authorization")
	p.authenticate(r, b.core.cookies(r), a)
	if p.assertion != nil {
		if err := p.setAssertion(r, a); err != nil {
			return true, p.assertionFailed(w, r, err)
		}
	}
	return true, next.ServeHTTP(w, r)
}

// enforceBearerAccess applies the route's rules and step-up requirements
// to a token's identity, as enforceAccess does to a session's: a token
// the rules refuse gets 403; one whose login does not meet require_acr or
// max_age gets 401 with the RFC 9470 challenge (the client must get a
// token from a stronger or more recent login; there is nothing to redirect).
func (p *PKCEAuth) enforceBearerAccess(w http.ResponseWriter, r *http.Request, a *activeSession) (bool, error) {
	ap := p.access
	res := ap.decide(a)
	skew := int64(time.Duration(p.bearer.core.ClockSkew) / time.Second)
	switch {
	case res.denied != "":
		p.debug("bearer token refused by the rules", "user_id", a.UserID, "reason", res.denied, "remote_ip", remoteIP(r))
		w.Header().Set("Cache-Control", "no-store")
		return true, p.fail(w, r, http.StatusForbidden, "Access denied", "This account may not use this resource.")
	case res.acrLow || (ap.maxAge > 0 && now().Unix()-a.AuthTime > ap.maxAge+skew):
		w.Header().Set("WWW-Authenticate", ap.challenge)
		w.Header().Set("Cache-Control", "no-store")
		return true, p.fail(w, r, http.StatusUnauthorized, "Stronger sign-in required",
			"This resource needs an access token from a stronger or more recent sign-in.")
	}
	return false, nil
}

// rejectBearer answers a refused bearer request with its RFC 6750
// challenge. reason is logged at debug level; it never holds the token.
func (p *PKCEAuth) rejectBearer(w http.ResponseWriter, r *http.Request, status int, code, description, reason string) error {
	p.debug("bearer token rejected", "reason", reason, "error", code, "remote_ip", remoteIP(r))
	w.Header().Set("WWW-Authenticate", p.bearerChallenge(r, code, description))
	w.Header().Set("Cache-Control", "no-store")
	title := "Invalid access token"
	switch status {
	case http.StatusBadRequest:
		title = "Malformed Authorization header"
	case http.StatusForbidden:
		title = "Insufficient scope"
	}
	return p.fail(w, r, status, title, upperFirst(description)+".")
}

// bearerChallenge is the WWW-Authenticate value of a 401 or 403: plain
// `Bearer` when bearer mode is off; otherwise with the error code and
// description (none when the request simply had no token, RFC 6750 §3.1),
// the required scopes and, with resource_metadata, its URL (RFC 9728 §5.1).
// description must be a constant without quotes or backslashes.
func (p *PKCEAuth) bearerChallenge(r *http.Request, code, description string) string {
	b := p.bearer
	if b == nil {
		return "Bearer"
	}
	var sb strings.Builder
	sb.WriteString("Bearer")
	sep := " "
	param := func(k, v string) {
		sb.WriteString(sep)
		sb.WriteString(k)
		sb.WriteString(`="`)
		sb.WriteString(v)
		sb.WriteByte('"')
		sep = ", "
	}
	if code != "" {
		param("error", code)
		if description != "" {
			param("error_description", description)
		}
	}
	if b.scope != "" {
		param("scope", b.scope)
	}
	if b.metadata != nil {
		if u := b.metadata.url(r); u != "" {
			param("resource_metadata", u)
		}
	}
	return sb.String()
}

// parseAuthorization reads a bearer token from the Authorization header
// values. It returns the token, or "" when there is no bearer credential
// (no header, or another scheme such as Basic); or a status (400 for a
// malformed header, 401 for a token larger than maxSize) with a
// description. The scheme is case-insensitive (RFC 7235 §2.1) and the
// token must be a token68 (RFC 6750 §2.1).
func parseAuthorization(values []string, maxSize int) (token string, status int, description string) {
	switch len(values) {
	case 0:
		return "", 0, ""
	case 1:
	default:
		return "", http.StatusBadRequest, "the request has more than one Authorization header"
	}
	v := values[0]
	scheme, rest, _ := strings.Cut(v, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", 0, ""
	}
	token = strings.TrimLeft(rest, " ")
	if token == "" {
		return "", http.StatusBadRequest, "the Authorization header has the Bearer scheme but no token"
	}
	if len(token) > maxSize {
		return "", http.StatusUnauthorized, fmt.Sprintf("the access token is larger than %d bytes", maxSize)
	}
	if !isToken68(token) {
		return "", http.StatusBadRequest, "the bearer token has characters a token cannot have (RFC 6750 b64token)"
	}
	return token, 0, ""
}

// isToken68 is RFC 7235's token68: 1*( ALPHA / DIGIT / "-" / "." / "_" /
// "~" / "+" / "/" ) *"=".
func isToken68(s string) bool {
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			break
		}
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

func upperFirst(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
