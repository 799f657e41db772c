package pkceauth

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// bearerFailure is a refused token: the status, RFC 6750 error code and
// description the client sees, and the reason that is logged (never the
// token).
type bearerFailure struct {
	status      int
	code        string
	description string
	reason      string
}

func invalidToken(description string) *bearerFailure {
	return &bearerFailure{status: http.StatusUnauthorized, code: "invalid_token", description: description, reason: description}
}

// verifyBearer returns the identity of a valid access token: from the
// cache when this token was verified before and has not expired since,
// else by checking it in full.
func (p *PKCEAuth) verifyBearer(ctx context.Context, token string) (*activeSession, *bearerFailure) {
	b := p.bearer
	t := now()
	if a := b.cache.get(token); a != nil {
		if t.Unix() < a.Expires {
			return a, nil
		}
		b.cache.remove(token)
		return nil, invalidToken("the access token has expired")
	}
	a, f := p.checkBearer(ctx, token, t)
	if f != nil {
		return nil, f
	}
	b.cache.put(token, a, t.Unix())
	return a, nil
}

// checkBearer verifies a JWT access token as RFC 9068 §4 asks, with go-jose
// doing the parsing and the signature check against the provider's keys.
func (p *PKCEAuth) checkBearer(ctx context.Context, token string, t time.Time) (*activeSession, *bearerFailure) {
	b := p.bearer
	c := b.core
	st, err := c.provider.get(ctx)
	if err != nil {
		return nil, &bearerFailure{status: http.StatusServiceUnavailable, reason: "provider discovery: " + truncate(err.Error(), 200)}
	}
	algs := make([]jose.SignatureAlgorithm, len(st.signingAlgs))
	for i, a := range st.signingAlgs {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	// Only compact JWS with one of the accepted (asymmetric) algorithms
	// parses: `none`, HS*, JWE and JSON serialization are refused here.
	tok, err := jwt.ParseSigned(token, algs)
	if err != nil {
		return nil, invalidToken("the access token is not a JWT signed with an accepted algorithm")
	}
	if len(tok.Headers) != 1 {
		return nil, invalidToken("the access token must have exactly one signature")
	}
	h := tok.Headers[0]
	if b.cfg.RequireATJWT {
		typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
		if !isATJWT(typ) {
			return nil, invalidToken("the token is not an RFC 9068 access token (typ is not at+jwt)")
		}
	}

	var std jwt.Claims
	var claims map[string]any
	if err := b.keys.verify(ctx, st.jwksURI, tok, h, &std, &claims); err != nil {
		if errors.Is(err, errProviderUnavailable) {
			return nil, &bearerFailure{status: http.StatusServiceUnavailable, reason: truncate(err.Error(), 300)}
		}
		return nil, invalidToken("the access token's signature does not verify with the provider's keys")
	}

	if std.Expiry == nil {
		return nil, invalidToken("the access token has no exp")
	}
	err = std.ValidateWithLeeway(jwt.Expected{
		Issuer:      c.Issuer,
		AnyAudience: jwt.Audience(b.cfg.Audiences),
		Time:        t,
	}, time.Duration(c.ClockSkew))
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return nil, invalidToken("the access token was issued by another issuer")
	case errors.Is(err, jwt.ErrInvalidAudience):
		return nil, invalidToken("the access token is not meant for this resource (aud)")
	case errors.Is(err, jwt.ErrExpired):
		return nil, invalidToken("the access token has expired")
	case errors.Is(err, jwt.ErrNotValidYet):
		return nil, invalidToken("the access token is not valid yet (nbf)")
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return nil, invalidToken("the access token is issued in the future (iat)")
	default:
		return nil, invalidToken("the access token's claims are invalid")
	}
	if std.Subject == "" {
		return nil, invalidToken("the access token has no sub")
	}

	if missing := missingScopes(claims, b.cfg.RequiredScopes); len(missing) > 0 {
		return nil, &bearerFailure{
			status: http.StatusForbidden, code: "insufficient_scope",
			description: "the access token lacks a required scope",
			reason:      "missing scopes: " + truncate(strings.Join(missing, " "), 200),
		}
	}

	s, f := c.newSession(claims, &oidc.IDToken{Subject: std.Subject}, "", t)
	if f != nil {
		return nil, invalidToken("the access token lacks the claim this site uses as the user id")
	}
	// What the route's rules read: the token's own claims (a token has
	// no login transaction to carry them), and the login's acr and
	// auth_time when the provider puts them into access tokens.
	s.RuleClaims = ruleClaims(claims, p.access.paths())
	s.ACR, _ = claims["acr"].(string)
	if at, ok := claims["auth_time"].(float64); ok {
		if at < 0 || at > float64(t.Unix())+float64(time.Duration(c.ClockSkew)/time.Second) {
			return nil, invalidToken("the access token's auth_time is negative or in the future")
		}
		s.AuthTime = int64(at)
	}
	// Accepted until exp plus the allowed skew, as checked above.
	s.Expires = std.Expiry.Time().Add(time.Duration(c.ClockSkew)).Unix()
	s.AccessToken = token // for pass_access_token
	return c.activate(s), nil
}

// isATJWT accepts the RFC 9068 type, with or without the application/
// prefix, case-insensitively (RFC 7515 §4.1.9).
func isATJWT(typ string) bool {
	typ = strings.ToLower(typ)
	return typ == "at+jwt" || typ == "application/at+jwt"
}

// missingScopes returns the required scopes the token's `scope` and `scp`
// claims do not grant. Both are read: `scope` is a space-separated string
// (RFC 9068 §2.2.3, RFC 8693 §4.2), `scp` an array (Okta) or a
// space-separated string (Entra ID).
func missingScopes(claims map[string]any, required []string) []string {
	if len(required) == 0 {
		return nil
	}
	var granted []string
	for _, name := range []string{"scope", "scp"} {
		switch v := claims[name].(type) {
		case string:
			granted = append(granted, strings.Fields(v)...)
		case []any:
			for _, e := range v {
				if s, ok := e.(string); ok {
					granted = append(granted, s)
				}
			}
		}
	}
	var missing []string
	for _, r := range required {
		if !slices.Contains(granted, r) {
			missing = append(missing, r)
		}
	}
	return missing
}
