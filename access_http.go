package pkceauth

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/caddy-pkce/caddy-pkce/internal/errpage"
)

// enforceAccess applies the route's rules and step-up requirements to a
// valid session of the provider c. It reports whether it answered the
// request (a new login, 401 or 403), in which case err is the handler's
// result. The decision is made per request, not kept with the session,
// because a named provider's sessions serve routes with other rules; it
// does not allocate unless the session is refused.
func (p *PKCEAuth) enforceAccess(w http.ResponseWriter, r *http.Request, c *PKCEAuth, jar *cookieJar, a *activeSession) (bool, error) {
	ap := p.access
	res := ap.decide(a)
	skew := int64(time.Duration(c.ClockSkew) / time.Second)
	switch {
	case res.stale:
		// The session was made by a login that did not keep the claims
		// these rules read (started by another handler sharing the
		// cookie, or before the rules existed): a new login started here
		// asks the callback to keep them.
		p.debug("session lacks claims the rules read; signing in again", "user_id", a.UserID)
		return true, p.signInAgain(w, r, c, jar, staleChallenge, "Sign-in required",
			"This resource needs information about your account that the current session does not hold. Sign in again through the site.")
	case res.denied != "":
		return true, p.forbid(w, r, c, a, res.denied)
	case res.acrLow || (ap.maxAge > 0 && now().Unix()-a.AuthTime > ap.maxAge+skew):
		if l := p.logger.Check(zap.DebugLevel, "step-up sign-in required"); l != nil {
			l.Write(zap.String("user_id", a.UserID), zap.String("acr", a.ACR), zap.Int64("auth_time", a.AuthTime),
				zap.String("path", truncate(r.URL.Path, 200)))
		}
		return true, p.signInAgain(w, r, c, jar, ap.challenge, "Stronger sign-in required",
			"This resource needs a stronger or more recent sign-in. Sign in again through the site.")
	}
	return false, nil
}

// signInAgain sends a navigation to the provider c (the login carries this
// route's requirements, see require) and answers anything else 401 with
// the given WWW-Authenticate challenge.
func (p *PKCEAuth) signInAgain(w http.ResponseWriter, r *http.Request, c *PKCEAuth, jar *cookieJar, challenge, title, detail string) error {
	if p.classify(r) == navigationRequest {
		return c.startLogin(w, r, jar, p.access)
	}
	w.Header().Set("WWW-Authenticate", challenge)
	return p.fail(w, r, http.StatusUnauthorized, title, detail)
}

// staleChallenge answers an API request whose session must be renewed.
const staleChallenge = `Bearer error="invalid_token", error_description="The session lacks claims this resource needs; sign in again"`

// stepUpChallenge is the RFC 9470 challenge for acr and max_age.
func stepUpChallenge(acr []string, maxAge int64) string {
	v := `Bearer error="insufficient_user_authentication", error_description="A stronger or more recent sign-in is required"`
	if len(acr) > 0 {
		v += `, acr_values="` + strings.Join(acr, " ") + `"`
	}
	if maxAge > 0 {
		v += `, max_age="` + strconv.FormatInt(maxAge, 10) + `"`
	}
	return v
}

// require puts the handler's step-up requirements and the claims its
// rules read into a login it starts. The callback checks and keeps them
// from there, because it may be served by another handler sharing the
// callback path and cookie.
func (ap *accessPolicy) require(txn *transaction) {
	if ap == nil {
		return
	}
	txn.ACR, txn.MaxAge, txn.Claims = ap.acr, ap.maxAge, ap.claimPaths
}

// paths are the claims the rules read; nil for a nil policy.
func (ap *accessPolicy) paths() []string {
	if ap == nil {
		return nil
	}
	return ap.claimPaths
}

// stepUpParams are the authorization request parameters of the login's
// requirements (OpenID Connect Core 3.1.2.1).
func (t *transaction) stepUpParams() []oauth2.AuthCodeOption {
	var opts []oauth2.AuthCodeOption
	if len(t.ACR) > 0 {
		opts = append(opts, oauth2.SetAuthURLParam("acr_values", strings.Join(t.ACR, " ")))
	}
	if t.MaxAge > 0 {
		opts = append(opts, oauth2.SetAuthURLParam("max_age", strconv.FormatInt(t.MaxAge, 10)))
	}
	return opts
}

// completeSession checks the ID token's acr and auth_time against what the
// login asked for (OpenID Connect Core 3.1.3.7: auth_time is required when
// max_age was sent, acr must be one of the requested values), and records
// them and the claims rules read in the new session. The requirements come
// from the transaction, not from this handler's config.
func (p *PKCEAuth) completeSession(s *session, claims map[string]any, idt *oidc.IDToken, txn *transaction, t time.Time) *loginFailure {
	reject := func(reason string) *loginFailure {
		return failLogin(http.StatusUnauthorized, "Sign-in rejected",
			"The identity provider's answer failed a security check, so you were not signed in. Please try again; if it persists, tell the site's administrator.",
			reason)
	}
	// From the ID token itself: userinfo, merged into claims, must not
	// be able to supply them.
	var c struct {
		ACR      string   `json:"acr"`
		AuthTime *float64 `json:"auth_time"`
	}
	if err := idt.Claims(&c); err != nil {
		return reject("ID token acr or auth_time malformed")
	}
	skew := int64(time.Duration(p.ClockSkew) / time.Second)
	if c.AuthTime != nil {
		// Checked as a float first: a huge value would overflow int64
		// and pass every later age check.
		if *c.AuthTime < 0 || *c.AuthTime > float64(t.Unix()+skew) {
			return reject("ID token auth_time is negative or in the future")
		}
		s.AuthTime = int64(*c.AuthTime)
	}
	if len(txn.ACR) > 0 && !slices.Contains(txn.ACR, c.ACR) {
		return failLogin(http.StatusForbidden, "Stronger sign-in required",
			"This page needs a stronger sign-in (such as a second factor) than the identity provider performed. Please try again.",
			fmt.Sprintf("ID token acr %q is not one of the requested acr_values %q", truncate(c.ACR, 64), strings.Join(txn.ACR, " ")))
	}
	if txn.MaxAge > 0 {
		if c.AuthTime == nil {
			return reject("ID token has no auth_time although max_age was requested")
		}
		if age := t.Unix() - s.AuthTime; age > txn.MaxAge+skew {
			return failLogin(http.StatusForbidden, "Recent sign-in required",
				"This page needs a recent sign-in, but the identity provider reused an older one. Please try again.",
				fmt.Sprintf("ID token auth_time is %ds old, more than the requested max_age %ds", age, txn.MaxAge))
		}
	}
	s.ACR = c.ACR
	s.RuleClaims = ruleClaims(claims, p.ruleClaimPaths, txn.Claims)
	return nil
}

// forbid answers 403 to a signed-in user the rules refuse: never a new
// login, which would only loop. handle_errors routes get the error and
// can use the {http.auth.user.*} placeholders; otherwise a page names the
// account and offers to sign out.
func (p *PKCEAuth) forbid(w http.ResponseWriter, r *http.Request, c *PKCEAuth, a *activeSession, reason string) error {
	if l := p.logger.Check(zap.InfoLevel, "access denied"); l != nil {
		l.Write(zap.String("user_id", a.UserID), zap.String("reason", reason),
			zap.String("path", truncate(r.URL.Path, 200)), zap.String("remote_ip", remoteIP(r)))
	}
	exposeIdentity(r, a)
	const title = "Access denied"
	if errpage.Routed(r) {
		// The identity stays out of the message: error pages often
		// echo it unescaped.
		return caddyhttp.Error(http.StatusForbidden, errors.New(title+": this account may not open this page"))
	}
	who := a.displayName()
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if wantsHTML(r) {
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
		w.WriteHeader(http.StatusForbidden)
		return deniedPage.Execute(w, map[string]any{"User": who, "Logout": c.LogoutPath})
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusForbidden)
	_, _ = w.Write(marshalJSON(map[string]any{
		"status": http.StatusForbidden, "error": title,
		"error_description": "This account may not use this resource.", "user": who,
	}))
	return nil
}

// displayName names the signed-in account to its user.
func (a *activeSession) displayName() string {
	for _, v := range []string{a.Email, a.PreferredUsername, a.Name} {
		if v != "" {
			return v
		}
	}
	return a.UserID
}

// deniedPage is the built-in 403 page. html/template escapes the account
// name, which comes from the provider and may hold anything.
var deniedPage = template.Must(template.New("denied").Parse(strings.TrimSpace(`
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>403 Access denied</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}p{line-height:1.5}a{color:#0645ad}button{font:inherit;padding:.3rem .9rem}</style>
</head><body>
<h1>Access denied</h1>
<p>You are signed in as <strong>{{.User}}</strong>, and this account may not open this page.</p>
<form method="post" action="{{.Logout}}"><p><button type="submit">Sign out</button> to sign in with another account.</p></form>
<p><a href="/">Back to the site</a></p>
<p style="color:#888;font-size:.8rem">HTTP 403</p>
</body></html>
`)))

// passAnonymous lets a request without a session through for
// pass_unauthenticated: the identity placeholders are empty and the
// client's identity headers (and look-alikes) and the module's cookies are
// removed, as for a signed-in request.
func (p *PKCEAuth) passAnonymous(r *http.Request) {
	exposeIdentity(r, nil)
	if len(p.headerNames) > 0 || p.PassAccessToken != "" || p.assertion != nil {
		p.deleteUnderscoreLookalikes(r.Header)
	}
	for _, name := range p.headerNames {
		r.Header.Del(name)
	}
	if p.PassAccessToken != "" {
		r.Header.Del(p.PassAccessToken)
	}
	if p.assertion != nil {
		// No session, no assertion: a client's own must not pass for one.
		r.Header.Del(p.assertion.header)
	}
	if !p.KeepCookies {
		for _, c := range p.cores {
			c.cookies(r).stripCookies(r)
		}
	}
}

// anonymousPlaceholder answers every {http.auth.user.*} placeholder with ""
// for a request without a session, so that matchers such as
// `{http.auth.user.id} == ""` work (an unknown placeholder would be null
// in an expression and fail it).
func anonymousPlaceholder(key string) (any, bool) {
	if strings.HasPrefix(key, userPlaceholderPrefix) {
		return "", true
	}
	return nil, false
}
