package pkceguard

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// tokenParams are the parameters of a token request that must appear at
// most once for the guard and the server to agree on it.
var tokenParams = []string{
	"grant_type", "code", "code_verifier", "client_id", "redirect_uri",
	"client_secret", "client_assertion", "client_assertion_type",
}

// tokenError is an error response of the token endpoint (RFC 6749 §5.2).
type tokenError struct {
	status      int
	code        string // the "error" value
	reason      string // metric label
	description string
}

// serveToken handles a request to a token path: a token request with
// grant_type=authorization_code passes only with the code_verifier of the
// challenge bound to its code; any other grant passes unchanged.
func (g *Guard) serveToken(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	params, kind, err := requestParams(r)
	if err != nil {
		return g.refuseToken(w, r, "", &tokenError{status: http.StatusBadRequest, code: "invalid_request", reason: reasonBadRequest, description: err.Error()})
	}
	if kind == bodyMultipart || kind == bodyOther {
		// The guard cannot read such a body, and a lenient server might.
		return g.refuseToken(w, r, "", &tokenError{status: http.StatusBadRequest, code: "invalid_request", reason: reasonBadRequest,
			description: "token requests must be form-encoded (application/x-www-form-urlencoded, RFC 6749 section 4.1.3)"})
	}
	clientID, terr := g.checkToken(r, params)
	if terr != nil {
		return g.refuseToken(w, r, clientID, terr)
	}
	return next.ServeHTTP(w, r)
}

// checkToken decides about a token request; nil means pass it on. It
// consumes the code's binding whatever the outcome.
func (g *Guard) checkToken(r *http.Request, params url.Values) (clientID string, terr *tokenError) {
	invalidRequest := func(d string) *tokenError {
		return &tokenError{status: http.StatusBadRequest, code: "invalid_request", reason: reasonBadRequest, description: d}
	}
	invalidGrant := func(reason, d string) *tokenError {
		return &tokenError{status: http.StatusBadRequest, code: "invalid_grant", reason: reason, description: d}
	}
	if name := repeated(params, tokenParams...); name != "" {
		return "", invalidRequest(name + " is repeated (RFC 6749 section 3.2)")
	}
	// Compared without case, over-matching on purpose like response_type.
	if !strings.EqualFold(params.Get("grant_type"), "authorization_code") {
		return "", nil
	}
	code := params.Get("code")
	if code == "" {
		return "", invalidRequest("code is missing")
	}
	clientID, authenticated, err := clientIdentity(r, params)
	if err != nil {
		return clientID, invalidRequest(err.Error())
	}
	b, err := g.takeBinding(r.Context(), codeKey(code))
	if err != nil {
		g.logError("reading the binding of an authorization code", err)
		return clientID, &tokenError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", reason: reasonStoreError,
			description: "the PKCE binding store is unavailable; try again later"}
	}
	if b == nil {
		if g.exempt(clientID) || (g.ConfidentialWithoutPKCE && authenticated) {
			return clientID, nil
		}
		return clientID, invalidGrant(reasonUnknownCode, "the code has no PKCE challenge: it was issued without one, has expired or was already used")
	}
	if clientID == "" {
		return "", invalidRequest("client_id is missing")
	}
	if clientID != b.ClientID {
		return clientID, invalidGrant(reasonClientMismatch, "the code was issued to another client")
	}
	redirectURI := params.Get("redirect_uri")
	if b.Sent && redirectURI != b.Redirect || !b.Sent && redirectURI != "" && redirectURI != b.Redirect {
		return clientID, invalidGrant(reasonRedirectMismatch, "redirect_uri does not match the one of the authorization request")
	}
	verifier := params.Get("code_verifier")
	if verifier == "" {
		return clientID, invalidGrant(reasonMissingVerifier, "code_verifier is required: the code was issued for a PKCE challenge")
	}
	if !g.validVerifier(verifier) {
		return clientID, invalidGrant(reasonMalformedVerifier, "code_verifier must be 43 to 128 unreserved characters (RFC 7636 section 4.1)")
	}
	if !verifierMatches(b.Method, verifier, b.Challenge) {
		return clientID, invalidGrant(reasonVerifierMismatch, "code_verifier does not match the code_challenge")
	}
	return clientID, nil
}

// clientIdentity returns the client_id of a token request, from HTTP Basic
// credentials (RFC 6749 §2.3.1, form-encoded), the body, or the subject of a
// client assertion (RFC 7523 §3; not verified here, the server does that),
// and whether the request carries client credentials.
func clientIdentity(r *http.Request, params url.Values) (string, bool, error) {
	var basicID string
	authenticated := false
	if auth := r.Header.Get("Authorization"); len(auth) > 6 && strings.EqualFold(auth[:6], "basic ") {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(auth[6:]))
		if err != nil {
			return "", false, errors.New("the Basic credentials are malformed")
		}
		user, _, ok := strings.Cut(string(raw), ":")
		if !ok {
			return "", false, errors.New("the Basic credentials are malformed")
		}
		if basicID, err = url.QueryUnescape(user); err != nil {
			return "", false, errors.New("the Basic credentials are malformed")
		}
		authenticated = true
	}
	bodyID := params.Get("client_id")
	if basicID != "" && bodyID != "" && basicID != bodyID {
		return "", false, errors.New("client_id differs from the client of the Basic credentials")
	}
	if params.Get("client_secret") != "" || params.Get("client_assertion") != "" {
		authenticated = true
	}
	id := basicID
	if id == "" {
		id = bodyID
	}
	if id == "" && params.Get("client_assertion") != "" {
		id = assertionSubject(params.Get("client_assertion"))
	}
	return id, authenticated, nil
}

// assertionSubject returns the `sub` claim of a JWT client assertion without
// verifying it, or "".
func assertionSubject(jwt string) string {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	return claims.Sub
}

// refuseToken answers a refused token request with the JSON error of RFC
// 6749 §5.2, never cached.
func (g *Guard) refuseToken(w http.ResponseWriter, r *http.Request, clientID string, e *tokenError) error {
	g.refused(r, e.reason, clientID)
	body, _ := json.Marshal(map[string]string{"error": e.code, "error_description": e.description})
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if e.status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "5")
	}
	w.WriteHeader(e.status)
	_, _ = w.Write(body)
	return nil
}
