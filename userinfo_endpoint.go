package pkceauth

import (
	"fmt"
	"maps"
	"net/http"

	"github.com/caddy-pkce/caddy-pkce/internal/errpage"
)

// The userinfo endpoint (userinfo_path, default /oauth2/userinfo) tells a
// single-page app who is signed in, as JSON built from the session. It
// never shows a token: a script that can read it (an XSS) learns no more
// than the page already shows, and nothing it could replay. It sends no
// CORS headers, so other origins cannot read it.

// defaultUserinfoPath is where the identity is served unless userinfo_path
// says otherwise.
const defaultUserinfoPath = "/oauth2/userinfo"

// userinfoResponse is the endpoint's JSON body.
type userinfoResponse struct {
	ID                string            `json:"id"`
	Sub               string            `json:"sub"`
	Email             string            `json:"email,omitempty"`
	EmailVerified     bool              `json:"email_verified"`
	Name              string            `json:"name,omitempty"`
	PreferredUsername string            `json:"preferred_username,omitempty"`
	Groups            []string          `json:"groups"`
	Claims            map[string]string `json:"claims"`
}

// userinfoPathOf is the configured path, "" when the endpoint is off.
func userinfoPathOf(configured *string) string {
	switch {
	case configured == nil:
		return defaultUserinfoPath
	case *configured == "off":
		return ""
	}
	return *configured
}

// validateEndpoints checks the paths of the userinfo endpoint and the
// JWKS: each its own.
func (p *PKCEAuth) validateEndpoints() error {
	userinfo := userinfoPathOf(p.UserinfoPath)
	if userinfo != "" {
		if err := p.checkOwnPath("userinfo_path", userinfo); err != nil {
			return err
		}
	}
	if a := p.Assertion; a != nil {
		if err := a.validate(p); err != nil {
			return err
		}
		if jwks := a.jwksPath(); jwks != "" && jwks == userinfo {
			return fmt.Errorf("assertion: jwks_path and userinfo_path must differ (both %s)", jwks)
		}
	}
	return nil
}

// serveUserinfo answers the identity of the request's session s (nil for
// none) after the session check, which may have refreshed it and written
// its idle timer back.
func (p *PKCEAuth) serveUserinfo(w http.ResponseWriter, r *http.Request, s *activeSession) error {
	if !allowGetHead(w, r) {
		return nil
	}
	if s == nil {
		// Never a redirect: a script's fetch cannot follow one to the
		// provider; it should send the user to the site instead.
		w.Header().Set("WWW-Authenticate", "Bearer")
		errpage.JSON(w, http.StatusUnauthorized, "Authentication required", "No signed-in session.")
		return nil
	}
	body := userinfoResponse{
		ID:                s.UserID,
		Sub:               s.Subject,
		Email:             s.Email,
		EmailVerified:     s.EmailVerified,
		Name:              s.Name,
		PreferredUsername: s.PreferredUsername,
		Groups:            s.Groups,
		Claims:            make(map[string]string, len(s.std)+len(s.Claims)),
	}
	// The claims the placeholders show: the standard ones (kept in the
	// session's fields) and the others kept for the routes.
	for _, kv := range s.std {
		body.Claims[kv[0]] = kv[1]
	}
	maps.Copy(body.Claims, s.Claims)
	if body.Groups == nil {
		body.Groups = []string{}
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(marshalJSON(body))
	}
	return nil
}
