package pkceguard

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// authzRequest is an authorization request as the guard reads it.
type authzRequest struct {
	clientID     string
	redirectURI  string // as sent, or the client's one configured URI
	redirectSent bool
	state        string
	responseMode string
	challenge    string
	method       string
}

// verdict is what the guard does with an authorization request.
type verdict int

const (
	pass   verdict = iota // not a code-flow request, or PKCE optional and absent: forward unchanged
	bind                  // valid PKCE: remember it, then forward
	refuse                // answer an error; the server never sees it
)

// refusal says why a request is refused.
type refusal struct {
	reason      string // metric label, see the reason* constants
	description string // error_description; RFC 6749 §4.1.2.1 characters only
	// redirect is true when the error may go to the redirect_uri, if that is
	// trusted: the request named its client and redirect_uri unambiguously.
	redirect bool
}

// authorizationParams are the parameters that must appear at most once for
// the guard and the server to agree on the request.
var authorizationParams = []string{
	"response_type", "client_id", "redirect_uri", "state", "response_mode",
	"code_challenge", "code_challenge_method", "request", "request_uri",
}

// checkAuthorization decides about an authorization request from its
// parameters alone. For bind, req holds what to remember; for refuse, the
// refusal says why, and req what is known of the client.
func (g *Guard) checkAuthorization(params url.Values) (verdict, authzRequest, *refusal) {
	var req authzRequest
	if name := repeated(params, authorizationParams...); name != "" {
		return refuse, req, &refusal{reason: reasonBadRequest, description: name + " is repeated (RFC 6749 section 3.1)"}
	}
	// Only the code flow issues codes. Matching "code" anywhere, in any
	// case, over-matches on purpose: a lenient server must not issue a code
	// for a response_type the guard let through unchecked.
	if !strings.Contains(strings.ToLower(params.Get("response_type")), "code") {
		return pass, req, nil
	}
	req.clientID = params.Get("client_id")
	if req.clientID == "" {
		return refuse, req, &refusal{reason: reasonBadRequest, description: "client_id is missing"}
	}
	req.redirectURI = params.Get("redirect_uri")
	req.redirectSent = req.redirectURI != ""
	if !req.redirectSent {
		if uris := g.RedirectURIs[req.clientID]; len(uris) == 1 {
			req.redirectURI = uris[0]
		} else {
			return refuse, req, &refusal{reason: reasonBadRequest, description: "redirect_uri is missing; pkce_guard requires it to bind the authorization code"}
		}
	} else if checkRedirectURI(req.redirectURI) != nil {
		return refuse, req, &refusal{reason: reasonBadRequest, description: "redirect_uri must be an absolute URI without a fragment"}
	}
	req.state = params.Get("state")
	req.responseMode = params.Get("response_mode")
	req.challenge = params.Get("code_challenge")
	req.method = params.Get("code_challenge_method")

	if params.Has("request") || params.Has("request_uri") {
		return refuse, req, &refusal{reason: reasonBadRequest, redirect: true,
			description: "request objects (request, request_uri) are not supported behind pkce_guard; send the parameters in the query"}
	}
	if req.challenge == "" {
		if req.method != "" {
			return refuse, req, &refusal{reason: reasonMissingChallenge, redirect: true, description: "code_challenge_method was sent without code_challenge"}
		}
		if g.exempt(req.clientID) || g.ConfidentialWithoutPKCE {
			return pass, req, nil
		}
		return refuse, req, &refusal{reason: reasonMissingChallenge, redirect: true, description: "code_challenge is required (PKCE, RFC 7636); use code_challenge_method S256"}
	}
	if req.method == "" {
		// RFC 7636 §4.3: an absent method means plain.
		if !slices.Contains(g.Methods, methodPlain) {
			return refuse, req, &refusal{reason: reasonMethodNotAllowed, redirect: true, description: "code_challenge_method is missing, which means plain; use S256"}
		}
		req.method = methodPlain
	}
	if !slices.Contains(g.Methods, req.method) {
		return refuse, req, &refusal{reason: reasonMethodNotAllowed, redirect: true, description: "code_challenge_method is not allowed; allowed: " + strings.Join(g.Methods, " ")}
	}
	if !g.validChallenge(req.method, req.challenge) {
		d := "code_challenge must be 43 base64url characters encoding a SHA-256 digest (S256)"
		if req.method == methodPlain {
			d = "code_challenge must be 43 to 128 unreserved characters (plain)"
		}
		return refuse, req, &refusal{reason: reasonMalformedChallenge, redirect: true, description: d}
	}
	switch req.responseMode {
	case "", "query", "fragment":
	default:
		return refuse, req, &refusal{reason: reasonBadRequest, redirect: true,
			description: "response_mode is not supported behind pkce_guard; the code must come back in a redirect (query or fragment)"}
	}
	return bind, req, nil
}

// serveAuthorization handles a request to an authorization path.
func (g *Guard) serveAuthorization(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	params, kind, err := requestParams(r)
	if err != nil {
		return g.refuseAuthorization(w, r, authzRequest{}, &refusal{reason: reasonBadRequest, description: err.Error()})
	}
	if kind == bodyMultipart {
		return g.refuseAuthorization(w, r, authzRequest{}, &refusal{reason: reasonBadRequest, description: "authorization requests must be sent in the query or as a form-encoded body"})
	}
	if !params.Has("response_type") {
		// Not an authorization request: a login page or form under the
		// same path (Dex serves /dex/auth/<connector>/login).
		return next.ServeHTTP(g.capture(w, r, nil), r)
	}
	v, req, ref := g.checkAuthorization(params)
	switch v {
	case refuse:
		return g.refuseAuthorization(w, r, req, ref)
	case pass:
		if c := g.logger.Check(zapcore.DebugLevel, "authorization request passed without PKCE"); c != nil {
			c.Write(zap.String("client_id", req.clientID))
		}
		return next.ServeHTTP(g.capture(w, r, nil), r)
	}

	b := &binding{
		Challenge: challengeDigest(req.challenge),
		Method:    req.method,
		ClientID:  req.clientID,
		Redirect:  req.redirectURI,
		Sent:      req.redirectSent,
		Expires:   now().Add(time.Duration(g.BindingLifetime)).Unix(),
	}
	if req.state != "" {
		b.State = digest(req.state)
	}
	secure := r.TLS != nil
	if err := g.setPendingCookie(r.Context(), w.Header(), b, secure); err != nil {
		return g.unavailable(w, r, "sealing the pending-request cookie", err)
	}
	if req.state != "" {
		u, _ := url.Parse(req.redirectURI)
		if err := g.rememberState(r.Context(), stateKey(redirectTarget(u), req.state), b); err != nil {
			return g.unavailable(w, r, "storing the pending request", err)
		}
	}
	return next.ServeHTTP(g.capture(w, r, b), r)
}

// refuseAuthorization answers a refused authorization request: with a
// redirect carrying the error (RFC 6749 §4.1.2.1) when the request's
// redirect_uri is trusted for its client, otherwise with a 400 page, since
// an unverified redirect_uri must not receive anything.
func (g *Guard) refuseAuthorization(w http.ResponseWriter, r *http.Request, req authzRequest, ref *refusal) error {
	g.refused(r, ref.reason, req.clientID)
	if ref.redirect && (!req.redirectSent || g.trustedRedirect(req.clientID, req.redirectURI)) && req.redirectURI != "" {
		if target, err := errorRedirect(req, ref.description); err == nil {
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Location", target)
			status := http.StatusFound
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				status = http.StatusSeeOther
			}
			w.WriteHeader(status)
			return nil
		}
	}
	return g.errorPage(w, r, http.StatusBadRequest, "Invalid authorization request", ref.description)
}

// errorRedirect builds the error response of RFC 6749 §4.1.2.1 on the
// client's redirect_uri, in the fragment when response_mode asks for it.
func errorRedirect(req authzRequest, description string) (string, error) {
	u, err := url.Parse(req.redirectURI)
	if err != nil {
		return "", err
	}
	vals := url.Values{"error": {"invalid_request"}, "error_description": {description}}
	if req.state != "" {
		vals.Set("state", req.state)
	}
	if req.responseMode == "fragment" {
		u.Fragment = ""
		u.RawFragment = ""
		return u.String() + "#" + vals.Encode(), nil
	}
	// Append, keeping the client's own query exactly as registered.
	if u.RawQuery != "" {
		u.RawQuery += "&"
	}
	u.RawQuery += vals.Encode()
	return u.String(), nil
}
