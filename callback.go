package pkceauth

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

// maxCallbackBody bounds a form_post callback body.
const maxCallbackBody = 64 << 10

// loginFailure is a failed callback: the status and text the user sees, and
// the reason that is logged (never containing a token, code or secret).
type loginFailure struct {
	status int
	title  string
	detail string
	reason string
}

func (f *loginFailure) Error() string { return f.reason }

func failLogin(status int, title, detail, reason string) *loginFailure {
	return &loginFailure{status: status, title: title, detail: detail, reason: reason}
}

// serveCallback completes a login: it matches the state to a transaction
// cookie, checks the response, exchanges the code with the PKCE verifier,
// verifies the ID token and creates the session. Whatever the outcome, the
// transaction is used up, and nothing is created unless every check passed.
func (p *PKCEAuth) serveCallback(w http.ResponseWriter, r *http.Request, jar *cookieJar) error {
	w.Header().Set("Cache-Control", "no-store")
	params, err := callbackParams(r)
	if err != nil {
		return p.callbackFailed(w, r, failLogin(http.StatusBadRequest, "Bad login response",
			"The response from the identity provider could not be read.", err.Error()), nil)
	}

	state := params.Get("state")
	if len(state) < txnIDLength || len(state) > 512 {
		return p.callbackFailed(w, r, failLogin(http.StatusBadRequest, "Login state missing",
			"This sign-in link is incomplete or was not started here. Please go back to the site and sign in again.",
			"missing or malformed state"), nil)
	}
	name := jar.txnName(state)
	formPost := p.ResponseMode == "form_post"
	txn, ok := p.openTransaction(name, cookieValue(r, name))
	if !ok || subtle.ConstantTimeCompare([]byte(txn.State), []byte(state)) != 1 {
		return p.callbackFailed(w, r, failLogin(http.StatusBadRequest, "Login expired or not recognised",
			"This sign-in was not started in this browser, was already used, or took too long. Please go back to the site and sign in again.",
			"state does not match a live login"), nil)
	}
	// The transaction is single-use from here on.
	http.SetCookie(w, jar.txnCookie(name, "", -1, formPost))

	st, err := p.provider.get(r.Context())
	if err != nil {
		return p.providerError(w, r, err)
	}

	// RFC 9207: a present iss must match, and one the provider promised
	// must be present. This defeats mix-up attacks.
	if iss, present := params["iss"]; present || st.issParamRequired {
		if !present || len(iss) != 1 || iss[0] != p.Issuer {
			return p.callbackFailed(w, r, failLogin(http.StatusBadRequest, "Login response from the wrong provider",
				"The sign-in response did not come from the expected identity provider.",
				"iss parameter missing or not equal to the issuer (RFC 9207)"), txn)
		}
	}

	if code := params.Get("error"); code != "" {
		status := http.StatusBadGateway
		switch code {
		case "access_denied", "login_required", "consent_required", "interaction_required", "account_selection_required":
			status = http.StatusForbidden
		}
		desc := truncate(params.Get("error_description"), 300)
		return p.callbackFailed(w, r, failLogin(status, "The identity provider refused the sign-in",
			fmt.Sprintf("The provider answered %q. %s", truncate(code, 64), desc),
			"provider returned error "+truncate(code, 64)), txn)
	}

	code := params.Get("code")
	if code == "" {
		return p.callbackFailed(w, r, failLogin(http.StatusBadRequest, "Bad login response",
			"The sign-in response carried no authorization code.", "no code in callback"), txn)
	}

	ctx, cancel := context.WithTimeout(p.provider.context(r.Context()), time.Duration(p.Timeout))
	defer cancel()
	cfg := st.oauth2
	cfg.RedirectURL = txn.RedirectURI
	token, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(txn.Verifier))
	if err != nil {
		return p.callbackFailed(w, r, exchangeFailure(err), txn)
	}

	s, f := p.verifyTokens(ctx, st, token, txn)
	if f != nil {
		return p.callbackFailed(w, r, f, txn)
	}

	if f := p.startSession(w, r, jar, s, token); f != nil {
		return p.callbackFailed(w, r, f, txn)
	}

	p.metrics.loginSucceeded()
	p.events.emit(r.Context(), "pkce_login", map[string]any{"user_id": s.UserID, "issuer": p.Issuer})
	if c := p.logger.Check(zap.InfoLevel, "login succeeded"); c != nil {
		c.Write(zap.String("user_id", s.UserID), zap.String("return_to", txn.ReturnTo),
			zap.Duration("duration", time.Since(time.Unix(txn.Created, 0))), zap.String("remote_ip", remoteIP(r)))
	}
	w.Header().Set("Location", returnPathOrRoot(txn.ReturnTo))
	w.WriteHeader(http.StatusSeeOther)
	return nil
}

// callbackParams reads the response parameters from the query (GET) or,
// for response_mode=form_post, from the form body (POST).
func callbackParams(r *http.Request) (url.Values, error) {
	switch r.Method {
	case http.MethodGet:
		return r.URL.Query(), nil
	case http.MethodPost:
		r.Body = http.MaxBytesReader(nil, r.Body, maxCallbackBody)
		if err := r.ParseForm(); err != nil {
			return nil, errors.New("unreadable form_post body")
		}
		return r.PostForm, nil
	default:
		return nil, fmt.Errorf("method %s not allowed at the callback", r.Method)
	}
}

// exchangeFailure classifies a failed code exchange.
func exchangeFailure(err error) *loginFailure {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		reason := fmt.Sprintf("token endpoint answered HTTP %d", re.Response.StatusCode)
		if re.ErrorCode != "" {
			reason += " error=" + truncate(re.ErrorCode, 64)
		}
		return failLogin(http.StatusBadGateway, "Sign-in could not be completed",
			"The identity provider did not accept the sign-in. Please try again.", reason)
	}
	return failLogin(http.StatusServiceUnavailable, "Identity provider unreachable",
		"The identity provider did not answer. Please try again in a moment.",
		"token endpoint unreachable: "+truncate(err.Error(), 200))
}

// verifyTokens validates the ID token fully (go-oidc: signature with the
// algorithm allow-list, iss, aud, exp; here: azp, iat, nonce) and builds the
// session from its claims, merged with userinfo when configured.
func (p *PKCEAuth) verifyTokens(ctx context.Context, st *providerState, token *oauth2.Token, txn *transaction) (*session, *loginFailure) {
	reject := func(reason string) (*session, *loginFailure) {
		return nil, failLogin(http.StatusUnauthorized, "Sign-in rejected",
			"The identity provider's answer failed a security check, so you were not signed in. Please try again; if it persists, tell the site's administrator.",
			reason)
	}
	raw, _ := token.Extra("id_token").(string)
	if raw == "" {
		return reject("token response has no id_token (is the openid scope granted?)")
	}
	idt, err := st.verifier.Verify(ctx, raw)
	if err != nil {
		return reject("ID token: " + truncate(err.Error(), 300))
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(txn.Nonce)) != 1 {
		return reject("ID token nonce does not match the login's nonce")
	}
	t := now()
	skew := time.Duration(p.ClockSkew)
	if idt.IssuedAt.IsZero() || idt.IssuedAt.After(t.Add(skew)) {
		return reject("ID token iat is missing or in the future")
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return reject("ID token claims unreadable")
	}
	if idt.Subject == "" {
		return reject("ID token has no sub")
	}
	// OpenID Connect Core 3.1.3.7: with several audiences azp should be
	// present; when present it must be our client.
	azp, hasAzp := claims["azp"].(string)
	if hasAzp && azp != p.ClientID {
		return reject("ID token azp is not this client")
	}
	if len(idt.Audience) > 1 && !hasAzp {
		return reject("ID token has several audiences but no azp")
	}

	if p.Userinfo && st.userinfoURL != "" {
		info, err := st.oidc.UserInfo(ctx, oauth2.StaticTokenSource(token))
		if err != nil {
			return nil, failLogin(http.StatusBadGateway, "Sign-in could not be completed",
				"The identity provider's user information could not be read. Please try again.",
				"userinfo: "+truncate(err.Error(), 200))
		}
		if info.Subject != idt.Subject {
			return reject("userinfo sub differs from the ID token's sub")
		}
		var extra map[string]any
		if err := info.Claims(&extra); err == nil {
			for k, v := range extra {
				if _, ok := claims[k]; !ok {
					claims[k] = v
				}
			}
		}
	}

	return p.newSession(claims, idt, raw, t)
}

// newSession builds the session from verified claims.
func (p *PKCEAuth) newSession(claims map[string]any, idt *oidc.IDToken, rawIDToken string, t time.Time) (*session, *loginFailure) {
	uid := idt.Subject
	if p.UserIDClaim != "sub" {
		v, ok := lookupClaim(claims, p.UserIDClaim)
		uid = claimString(v)
		if !ok || uid == "" {
			return nil, failLogin(http.StatusForbidden, "Sign-in incomplete",
				"Your account does not carry the identity this site needs. Tell the site's administrator.",
				"claim "+p.UserIDClaim+" (user_id_claim) is missing from the ID token")
		}
	}
	s := &session{
		UserID:            uid,
		Subject:           idt.Subject,
		Email:             claimString(claims["email"]),
		EmailVerified:     claimBool(claims["email_verified"]),
		Name:              claimString(claims["name"]),
		PreferredUsername: claimString(claims["preferred_username"]),
		IssuedAt:          t.Unix(),
		Expires:           t.Add(time.Duration(p.SessionLifetime)).Unix(),
		LastSeen:          t.Unix(),
		SID:               claimString(claims["sid"]),
		IDToken:           rawIDToken,
	}
	if v, ok := lookupClaim(claims, p.GroupsClaim); ok {
		s.Groups = claimStrings(v)
	}
	// Claims exposed as placeholders and headers.
	keep := map[string]string{}
	add := func(path string) {
		if v, ok := lookupClaim(claims, path); ok {
			keep[path] = claimString(v)
		}
	}
	for _, c := range []string{"sub", "email", "email_verified", "name", "preferred_username", p.UserIDClaim, p.GroupsClaim} {
		add(c)
	}
	for _, c := range p.Claims {
		add(c)
	}
	for _, c := range p.Headers {
		add(c)
	}
	if p.Assertion != nil {
		for _, c := range p.Assertion.Claims {
			add(c)
		}
	}
	s.Claims = keep
	return s, nil
}

// callbackFailed logs a failed login and shows its page. A transaction, if
// one was matched, has already been expired by then.
func (p *PKCEAuth) callbackFailed(w http.ResponseWriter, r *http.Request, f *loginFailure, txn *transaction) error {
	p.metrics.loginFailed()
	p.events.emit(r.Context(), "pkce_login_failed", map[string]any{"reason": f.reason, "issuer": p.Issuer})
	if c := p.logger.Check(zap.WarnLevel, "login failed"); c != nil {
		c.Write(zap.String("reason", f.reason), zap.Int("status", f.status), zap.String("remote_ip", remoteIP(r)))
	}
	return p.fail(w, r, f.status, f.title, f.detail)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// marshalJSON is json.Marshal for values that cannot fail.
func marshalJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
