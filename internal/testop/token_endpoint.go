package testop

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// tokenResponse is a successful token response (RFC 6749 5.1, OIDC Core 3.1.3.3).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
	IDToken      string `json:"id_token,omitempty"`
}

func (p *Provider) handleToken(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, newError(0, "invalid_request", "the token endpoint takes POST"))
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/x-www-form-urlencoded" {
		writeJSON(w, http.StatusBadRequest, newError(0, "invalid_request", "Content-Type must be application/x-www-form-urlencoded"))
		return
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, newError(0, "invalid_request", "unreadable form: %v", err))
		return
	}
	form := r.PostForm
	req := recordedTokenRequest(r, form)
	p.mu.Lock()
	p.rec.token = append(p.rec.token, req)
	m := p.mis
	p.mu.Unlock()

	switch {
	case m.TokenStatus500:
		http.Error(w, "internal server error (testop TokenStatus500)", http.StatusInternalServerError)
		return
	case m.TokenError != "":
		writeJSON(w, http.StatusBadRequest, newError(0, m.TokenError, "the provider refused (testop TokenError)"))
		return
	}

	resp, e := p.token(r, form, m)
	if e != nil {
		if e.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="testop"`)
		}
		writeJSON(w, e.status, e)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func recordedTokenRequest(r *http.Request, form url.Values) TokenRequest {
	req := TokenRequest{
		GrantType:    form.Get("grant_type"),
		Code:         form.Get("code"),
		CodeVerifier: form.Get("code_verifier"),
		ClientID:     form.Get("client_id"),
		RedirectURI:  form.Get("redirect_uri"),
		RefreshToken: form.Get("refresh_token"),
		Scope:        form.Get("scope"),
		AuthMethod:   "none",
		Form:         cloneValues(form),
	}
	if user, _, ok := basicAuth(r); ok {
		req.AuthMethod = "client_secret_basic"
		req.ClientID = user
	} else if form.Has("client_secret") {
		req.AuthMethod = "client_secret_post"
	}
	return req
}

// basicAuth decodes client_secret_basic credentials, which are
// form-urlencoded before base64 (RFC 6749 2.3.1).
func basicAuth(r *http.Request) (user, pass string, ok bool) {
	u, pw, ok := r.BasicAuth()
	if !ok {
		return "", "", false
	}
	user, err1 := url.QueryUnescape(u)
	pass, err2 := url.QueryUnescape(pw)
	if err1 != nil || err2 != nil {
		return u, pw, true
	}
	return user, pass, true
}

// token validates a token request and issues tokens.
func (p *Provider) token(r *http.Request, form url.Values, m Misbehaviour) (*tokenResponse, *oauthError) {
	if k := repeatedParam(form); k != "" {
		return nil, newError(http.StatusBadRequest, "invalid_request", "parameter %s is repeated", k)
	}
	clientID, e := p.authenticateClient(r, form)
	if e != nil {
		return nil, e
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch gt := form.Get("grant_type"); gt {
	case "authorization_code":
		return p.exchangeCode(clientID, form, m)
	case "refresh_token":
		return p.refresh(clientID, form, m)
	case "":
		return nil, newError(http.StatusBadRequest, "invalid_request", "grant_type is required")
	default:
		return nil, newError(http.StatusBadRequest, "unsupported_grant_type", "grant_type %q is not supported", gt)
	}
}

// authenticateClient enforces the client's one authentication method:
// "none" for a public client, client_secret_basic or client_secret_post
// otherwise (RFC 6749 2.3, 3.2.1).
func (p *Provider) authenticateClient(r *http.Request, form url.Values) (string, *oauthError) {
	unauthorized := func(format string, args ...any) (string, *oauthError) {
		return "", newError(http.StatusUnauthorized, "invalid_client", format, args...)
	}
	user, pass, basic := basicAuth(r)
	post := form.Has("client_secret")
	formID := form.Get("client_id")
	switch {
	case basic && post:
		return "", newError(http.StatusBadRequest, "invalid_request", "use one client authentication method, not Basic and client_secret both")
	case basic && formID != "" && formID != user:
		return "", newError(http.StatusBadRequest, "invalid_request", "client_id in the form differs from the Basic credentials")
	}
	id, secret := formID, form.Get("client_secret")
	if basic {
		id, secret = user, pass
	}
	switch {
	case id == "":
		return unauthorized("client_id is required")
	case id != p.cfg.ClientID:
		return unauthorized("unknown client %q", id)
	case p.cfg.ClientSecret == "" && (basic || post):
		return unauthorized("public client must not authenticate (token_endpoint_auth_method none)")
	case p.cfg.ClientSecret != "" && !basic && !post:
		return unauthorized("client authentication required (client_secret_basic or client_secret_post)")
	case p.cfg.ClientSecret != "" && subtle.ConstantTimeCompare([]byte(secret), []byte(p.cfg.ClientSecret)) != 1:
		return unauthorized("wrong client secret")
	}
	return id, nil
}

// exchangeCode is the authorization_code grant (RFC 6749 4.1.3, RFC 7636
// 4.6). The caller holds p.mu.
func (p *Provider) exchangeCode(clientID string, form url.Values, m Misbehaviour) (*tokenResponse, *oauthError) {
	invalidGrant := func(format string, args ...any) (*tokenResponse, *oauthError) {
		return nil, newError(http.StatusBadRequest, "invalid_grant", format, args...)
	}
	codeValue := form.Get("code")
	if codeValue == "" {
		return nil, newError(http.StatusBadRequest, "invalid_request", "code is required")
	}
	code := p.store.codes[codeValue]
	now := p.cfg.Now()
	switch {
	case code == nil:
		return invalidGrant("unknown authorization code")
	case code.used:
		// RFC 6749 4.1.2: a reused code revokes what it was exchanged for.
		p.store.revoke(code.grantID)
		return invalidGrant("authorization code already used; tokens issued from it are revoked")
	}
	code.used = true // one attempt per code, successful or not
	switch {
	case !now.Before(code.expires):
		return invalidGrant("authorization code expired")
	case code.clientID != clientID:
		return invalidGrant("authorization code was issued to another client")
	case form.Get("redirect_uri") != code.redirectURI:
		return invalidGrant("redirect_uri %q differs from the authorization request's", form.Get("redirect_uri"))
	}
	if e := checkVerifier(code, form.Get("code_verifier")); e != nil {
		return nil, e
	}
	g := p.store.grantFromCode(code)
	return p.issue(g, code.nonce, m)
}

// checkVerifier is the PKCE check (RFC 7636 4.6, RFC 9700 2.1.1).
func checkVerifier(code *authCode, verifier string) *oauthError {
	invalidGrant := func(desc string) *oauthError {
		return newError(http.StatusBadRequest, "invalid_grant", "%s", desc)
	}
	if code.challenge == "" {
		if verifier != "" {
			return invalidGrant("code_verifier sent but the authorization request had no code_challenge")
		}
		return nil
	}
	if verifier == "" {
		return invalidGrant("code_verifier is required")
	}
	if !plainChallenge.MatchString(verifier) {
		return invalidGrant("code_verifier must be 43-128 characters of [A-Za-z0-9-._~]")
	}
	computed := verifier
	if code.challengeMethod == "S256" {
		sum := sha256.Sum256([]byte(verifier))
		computed = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if subtle.ConstantTimeCompare([]byte(computed), []byte(code.challenge)) != 1 {
		return invalidGrant("code_verifier does not match code_challenge")
	}
	return nil
}

// refresh is the refresh_token grant with rotation and reuse detection (RFC
// 6749 6, RFC 9700 4.14.2). The caller holds p.mu.
func (p *Provider) refresh(clientID string, form url.Values, m Misbehaviour) (*tokenResponse, *oauthError) {
	invalidGrant := func(format string, args ...any) (*tokenResponse, *oauthError) {
		return nil, newError(http.StatusBadRequest, "invalid_grant", format, args...)
	}
	value := form.Get("refresh_token")
	if value == "" {
		return nil, newError(http.StatusBadRequest, "invalid_request", "refresh_token is required")
	}
	rt := p.store.refresh[value]
	if rt == nil {
		return invalidGrant("unknown refresh token")
	}
	g := p.store.grants[rt.grantID]
	switch {
	case g.clientID != clientID:
		return invalidGrant("refresh token was issued to another client")
	case rt.used:
		p.store.revoke(g.id)
		return invalidGrant("refresh token already used; the grant is revoked")
	case g.revoked:
		return invalidGrant("refresh token revoked")
	}
	if scope := form.Get("scope"); scope != "" {
		granted := strings.Fields(g.scope)
		for _, s := range strings.Fields(scope) {
			if !slices.Contains(granted, s) {
				return nil, newError(http.StatusBadRequest, "invalid_scope", "scope %q was not granted", s)
			}
		}
	}
	rt.used = true
	// OIDC Core 12.2: no nonce in ID tokens from a refresh.
	return p.issue(g, "", m)
}

// issue makes the tokens of a grant. The caller holds p.mu.
func (p *Provider) issue(g *grant, nonce string, m Misbehaviour) (*tokenResponse, *oauthError) {
	serverError := func(err error) (*tokenResponse, *oauthError) {
		return nil, newError(http.StatusInternalServerError, "server_error", "%v", err)
	}
	u, ok := p.users[g.subject]
	if !ok {
		return nil, newError(http.StatusBadRequest, "invalid_grant", "user %q no longer exists", g.subject)
	}
	now := p.cfg.Now()
	jti := randomToken()
	at, err := p.signAccessTokenLocked(p.accessTokenClaims(g, jti, now))
	if err != nil {
		return serverError(err)
	}
	p.store.access[jti] = g.id
	resp := &tokenResponse{
		AccessToken:  at,
		TokenType:    "Bearer",
		ExpiresIn:    int64(p.cfg.AccessTokenTTL / time.Second),
		RefreshToken: p.store.addRefresh(g),
		Scope:        g.scope,
	}
	if m.OmitIDToken {
		return resp, nil
	}
	claims := p.idTokenClaims(u, nonce, g.sid, g.authTime, now, m.ThinIDToken)
	claims["at_hash"] = atHash(p.cfg.SigningAlg, at)
	if g.acr != "" {
		claims["acr"] = g.acr
	}
	p.misbehaveClaims(claims, m, now)
	if resp.IDToken, err = p.signIDTokenLocked(claims, m); err != nil {
		return serverError(err)
	}
	return resp, nil
}
