package pkceauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
)

// AssertionConfig makes pkce_auth send the upstream a short-lived signed
// identity assertion: a JWT (JWS compact form, ES256) in a request header,
// whose keys are published as a JWK Set at jwks_path. An upstream that
// verifies it needs no cookie, session store or provider of its own, and
// cannot be fooled by a client that reaches it with forged headers.
//
// The assertion carries iss, sub (the user id, see user_id_claim), aud,
// iat, nbf, exp, jti and the claims listed in claims; its header has alg
// ES256, typ JWT and the kid of the signing key.
type AssertionConfig struct {
	// The request header that carries the assertion to the upstream. A
	// header of that name sent by the client, and its look-alikes with
	// underscores, are always removed first. Default: `X-Identity-Assertion`.
	Header string `json:"header,omitempty"`

	// The `aud` claim: who the assertion is for, such as
	// `https://app.internal`. The upstream must check it, so an assertion
	// made for one upstream is refused by another. Required.
	Audience string `json:"audience,omitempty"`

	// Claims of the session copied into the assertion, by the names (dotted
	// paths) used in the session. `email_verified` is a boolean and
	// `groups` the list of groups from groups_claim; other claims are
	// strings (arrays comma-joined), as in the placeholders. A claim the
	// user lacks is left out. iss, sub, aud, iat, nbf, exp and jti cannot
	// be listed. Default: none.
	Claims []string `json:"claims,omitempty"`

	// How long an assertion is valid (exp - iat), between 10s and 1h. An
	// assertion is reused for requests of the same session until half of
	// this has passed, so the upstream always receives one valid for at
	// least half of it. It never outlives the session. Default: 60s.
	Lifetime caddy.Duration `json:"lifetime,omitempty"`

	// The `iss` claim. Default: the origin the browser used, such as
	// `https://app.example.com` (behind a TLS-terminating proxy, as
	// redirect_url's default tells it). Set it when the site has several
	// names, so the upstream can expect one value.
	Issuer string `json:"issuer,omitempty"`

	// PEM files of ECDSA P-256 private keys (PKCS#8 or SEC 1). The first
	// signs; all are published at jwks_path, so a new key can be published
	// before it signs (add it second, wait for the JWKS caches, then move
	// it first). Accepts `{env.*}` placeholders. Default: a key generated
	// once and kept in Caddy's storage (`pkce_auth/assertion_key.pem`), so
	// instances sharing the storage sign with the same key.
	KeyFiles []string `json:"key_files,omitempty"`

	// The path where the public keys are served as a JWK Set
	// (application/jwk-set+json, cacheable for 5 minutes, no session
	// needed). `off` (or "") does not serve them. Default: `/oauth2/jwks`.
	JWKSPath *string `json:"jwks_path,omitempty"`
}

// assertionSigner is the runtime form of AssertionConfig.
type assertionSigner struct {
	header   string // canonical header name
	audience string
	claims   []string
	lifetime int64  // seconds
	issuer   string // "" means the request's origin
	keys     *assertionKeys
	jwksPath string // "" when not served
}

// mintedAssertion is a signed assertion, reused for the session it was made
// for until renewAt.
type mintedAssertion struct {
	signer  *assertionSigner // the route's: a named provider's session serves several
	token   string
	renewAt int64 // unix seconds
	// For the default issuer (the request's origin): the origin it names,
	// so a session used under another host name gets its own.
	host  string
	https bool
	// The assertions for other routes (other signers) of the same session,
	// at most maxRouteAssertions in all.
	next *mintedAssertion
}

// maxRouteAssertions bounds the assertions kept per session: one per route
// with its own assertion settings that the session is used on.
const maxRouteAssertions = 4

// reservedAssertionClaims are set by the module and cannot be listed.
var reservedAssertionClaims = []string{"iss", "sub", "aud", "iat", "nbf", "exp", "jti"}

// headersNeverSet are request headers an assertion must not replace.
var headersNeverSet = []string{"Host", "Cookie", "Connection", "Content-Length", "Content-Type", "Transfer-Encoding", "Upgrade", "Te", "Trailer"}

// Assertion defaults and limits.
const (
	defaultAssertionHeader   = "X-Identity-Assertion"
	defaultAssertionLifetime = 60 * time.Second
	defaultJWKSPath          = "/oauth2/jwks"
	minAssertionLifetime     = 10 * time.Second
	maxAssertionLifetime     = time.Hour
)

// setDefaults fills the defaults of the assertion block.
func (a *AssertionConfig) setDefaults() {
	if a.Header == "" {
		a.Header = defaultAssertionHeader
	}
	if a.Lifetime == 0 {
		a.Lifetime = caddy.Duration(defaultAssertionLifetime)
	}
	if a.JWKSPath == nil {
		path := defaultJWKSPath
		a.JWKSPath = &path
	}
}

// jwksPath is the path the keys are served at, "" for none.
func (a *AssertionConfig) jwksPath() string {
	if a.JWKSPath == nil || *a.JWKSPath == "off" {
		return ""
	}
	return *a.JWKSPath
}

// validate checks the assertion block (defaults applied) against the rest
// of the configuration.
func (a *AssertionConfig) validate(p *PKCEAuth) error {
	if !validHeaderName(a.Header) {
		return fmt.Errorf("assertion: header %q is not a valid header name", a.Header)
	}
	h := identityHeaderKey(a.Header)
	for _, never := range headersNeverSet {
		if h == identityHeaderKey(never) {
			return fmt.Errorf("assertion: header %s cannot carry the assertion; choose a header of its own such as %s", a.Header, defaultAssertionHeader)
		}
	}
	for name := range p.Headers {
		if h == identityHeaderKey(name) {
			return fmt.Errorf("assertion: header %s is also set by header; choose another name", a.Header)
		}
	}
	if p.PassAccessToken != "" && h == identityHeaderKey(p.PassAccessToken) {
		return fmt.Errorf("assertion: header %s is also set by pass_access_token; choose another name", a.Header)
	}
	if a.Audience == "" || strings.ContainsFunc(a.Audience, isSpaceOrControl) {
		return errors.New("assertion: audience is required, without spaces: the upstream's identifier, such as https://app.internal")
	}
	if a.Issuer != "" && strings.ContainsFunc(a.Issuer, isSpaceOrControl) {
		return fmt.Errorf("assertion: issuer %q must not contain spaces or control characters", a.Issuer)
	}
	seen := map[string]bool{}
	for _, c := range a.Claims {
		switch {
		case c == "" || strings.ContainsFunc(c, isSpaceOrControl):
			return fmt.Errorf("assertion: claims: %q is not a claim name", c)
		case slices.Contains(reservedAssertionClaims, c):
			return fmt.Errorf("assertion: claims: %s is set by the module itself and cannot be listed", c)
		case seen[c]:
			return fmt.Errorf("assertion: claims: %s is listed twice", c)
		}
		seen[c] = true
	}
	if d := time.Duration(a.Lifetime); d < minAssertionLifetime || d > maxAssertionLifetime {
		return fmt.Errorf("assertion: lifetime must be between %s and %s, not %s", minAssertionLifetime, maxAssertionLifetime, d)
	}
	for i, f := range a.KeyFiles {
		if f == "" {
			return fmt.Errorf("assertion: key_files[%d] is empty", i)
		}
	}
	if path := a.jwksPath(); path != "" {
		if err := p.checkOwnPath("assertion: jwks_path", path); err != nil {
			return err
		}
	}
	return nil
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

// identityHeaderKey is the canonical form of a header name with
// underscores read as dashes, as CGI, PHP and some frameworks read them.
func identityHeaderKey(name string) string {
	return http.CanonicalHeaderKey(strings.ReplaceAll(name, "_", "-"))
}

// provisionAssertion loads the signing keys. It reads files and Caddy's
// storage, no network.
func (p *PKCEAuth) provisionAssertion(ctx caddy.Context, repl *caddy.Replacer) error {
	a := p.Assertion
	if a == nil {
		return nil
	}
	keys, err := loadAssertionKeys(ctx, repl, a.KeyFiles)
	if err != nil {
		return fmt.Errorf("assertion: %v", err)
	}
	p.assertion = &assertionSigner{
		header:   http.CanonicalHeaderKey(a.Header),
		audience: a.Audience,
		claims:   slices.Clone(a.Claims),
		lifetime: int64(time.Duration(a.Lifetime) / time.Second),
		issuer:   a.Issuer,
		keys:     keys,
		jwksPath: a.jwksPath(),
	}
	if c := p.logger.Check(zap.InfoLevel, "identity assertion enabled"); c != nil {
		c.Write(zap.String("header", p.assertion.header), zap.String("audience", a.Audience),
			zap.String("kid", keys.kid), zap.String("jwks_path", p.assertion.jwksPath))
	}
	return nil
}

// setAssertion puts the session's assertion into the request for the
// upstream, after removing any the client sent. The assertion is minted
// once and reused until its renewal time, so a request normally costs one
// atomic load and a header entry.
func (p *PKCEAuth) setAssertion(r *http.Request, s *activeSession) error {
	a := p.assertion
	t := now().Unix()
	head := s.assertion.Load()
	m := head
	for m != nil && m.signer != a {
		m = m.next
	}
	if m == nil || t >= m.renewAt || (a.issuer == "" && (m.host != r.Host || m.https != (p.cores[0].scheme(r) == "https"))) {
		var err error
		if m, err = p.mintAssertion(r, s, t); err != nil {
			return err
		}
		// The new one first, then those of other routes. Requests racing
		// here may each sign one; the last stored wins, which is harmless.
		n := 1
		tail := &m.next
		for o := head; o != nil && n < maxRouteAssertions; o = o.next {
			if o.signer != a {
				c := *o
				c.next = nil
				*tail = &c
				tail = &c.next
				n++
			}
		}
		s.assertion.Store(m)
	}
	// Replaces whatever the client sent under this name (its look-alikes
	// with underscores went in authenticate).
	r.Header[a.header] = []string{m.token}
	return nil
}

// inheritAssertion keeps the assertion of prev, this instance's previous
// copy of the same server-side session, so that reading the record again
// after cache_ttl does not mean signing again. The claims of a session
// never change (a refresh keeps those of the login), so it stays right.
func (a *activeSession) inheritAssertion(prev *activeSession) {
	if prev != nil && prev.id == a.id && a.session != nil {
		if m := prev.assertion.Load(); m != nil {
			a.assertion.CompareAndSwap(nil, m)
		}
	}
}

// mintAssertion signs a new assertion for s at time t (unix seconds).
func (p *PKCEAuth) mintAssertion(r *http.Request, s *activeSession, t int64) (*mintedAssertion, error) {
	a := p.assertion
	m := &mintedAssertion{signer: a}
	iss := a.issuer
	if iss == "" {
		// The provider's view of the origin: its cookie_secure says
		// whether a TLS-terminating proxy is in front.
		c := p.cores[0]
		m.host, m.https = r.Host, c.scheme(r) == "https"
		iss = c.origin(r)
	}
	exp := min(t+a.lifetime, s.Expires)
	m.renewAt = t + (exp-t)/2
	payload, err := json.Marshal(a.claimSet(s, iss, t, exp))
	if err != nil {
		return nil, err
	}
	jws, err := a.keys.signer.Sign(payload)
	if err != nil {
		return nil, err
	}
	if m.token, err = jws.CompactSerialize(); err != nil {
		return nil, err
	}
	return m, nil
}

// claimSet is the assertion's payload for s, issued by iss at t until exp.
func (a *assertionSigner) claimSet(s *activeSession, iss string, t, exp int64) map[string]any {
	c := make(map[string]any, 7+len(a.claims))
	for _, name := range a.claims {
		if v, ok := assertionClaim(s, name); ok {
			c[name] = v
		}
	}
	if s.provider != "" {
		// Users of different providers may share a sub: the upstream
		// tells them apart by this claim.
		c["provider"] = s.provider
	}
	c["iss"] = iss
	c["sub"] = s.UserID
	c["aud"] = a.audience
	c["iat"] = t
	c["nbf"] = t
	c["exp"] = exp
	c["jti"] = randomToken()
	return c
}

// assertionClaim is the value of claim name of s in an assertion, with the
// types a JWT library expects for the standard ones.
func assertionClaim(s *activeSession, name string) (any, bool) {
	switch name {
	case "email_verified":
		if s.claim(name) != "" {
			return s.EmailVerified, true
		}
		return nil, false
	case "groups":
		if s.Groups != nil {
			return s.Groups, true
		}
		if _, ok := s.Claims[name]; ok {
			return []string{}, true
		}
		return nil, false
	}
	v := s.claim(name)
	return v, v != ""
}

// checkOwnPath checks a path the handler answers itself: absolute, and
// none of the others.
func (p *PKCEAuth) checkOwnPath(field, path string) error {
	if !strings.HasPrefix(path, "/") {
		return fmt.Errorf("%s must be a path starting with /, not %q", field, path)
	}
	cores := p.cores
	if len(cores) == 0 { // validated before it is provisioned
		cores = []*PKCEAuth{p}
	}
	for _, c := range cores {
		if path == c.CallbackPath || path == c.LogoutPath {
			return fmt.Errorf("%s %s is already the callback_path or logout_path", field, path)
		}
	}
	return nil
}

// assertionAlg is the signature algorithm of assertions.
const assertionAlg = jose.ES256

// jwksPath is the path of the JWK Set, "" when none is served.
func (p *PKCEAuth) jwksPath() string {
	if p.assertion == nil {
		return ""
	}
	return p.assertion.jwksPath
}

// assertionFailed answers a request whose assertion could not be signed:
// the upstream expects one, so the request does not pass without it.
func (p *PKCEAuth) assertionFailed(w http.ResponseWriter, r *http.Request, err error) error {
	if c := p.logger.Check(zap.ErrorLevel, "identity assertion could not be signed"); c != nil {
		c.Write(zap.Error(err))
	}
	return p.fail(w, r, http.StatusServiceUnavailable, "Identity assertion unavailable",
		"The request could not be passed on because the identity assertion for the application could not be made. Please try again in a moment.")
}
