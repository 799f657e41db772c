package pkceauth

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"
)

// serveLogout ends the session: the cookies are cleared first, then the
// browser goes to the provider's end_session_endpoint when it has one
// (RP-initiated logout), else straight to the post-logout page.
func (p *PKCEAuth) serveLogout(w http.ResponseWriter, r *http.Request, jar *cookieJar) error {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		return p.fail(w, r, http.StatusMethodNotAllowed, "Method not allowed", "Log out with GET or POST.")
	}
	if crossSite(r, p.origin(r)) {
		if c := p.logger.Check(zap.WarnLevel, "cross-site logout refused"); c != nil {
			c.Write(zap.String("remote_ip", remoteIP(r)), zap.String("origin", truncate(r.Header.Get("Origin"), 200)))
		}
		return p.fail(w, r, http.StatusForbidden, "Logout refused",
			"Logging out must be started from this site. Use the site's own logout link.")
	}

	s, err := p.endSession(w, r, jar)
	if err != nil {
		p.logStoreError(r, err)
		return p.storeUnavailable(w, r)
	}

	target := p.PostLogoutRedirect
	if s != nil {
		p.metrics.loggedOut()
		p.events.emit(r.Context(), "pkce_logout", map[string]any{"user_id": s.UserID, "issuer": p.Issuer})
		if c := p.logger.Check(zap.InfoLevel, "logout"); c != nil {
			c.Write(zap.String("user_id", s.UserID), zap.String("remote_ip", remoteIP(r)))
		}
		if end := p.endSessionURL(r, s); end != "" {
			target = end
		}
	}
	w.Header().Set("Location", target)
	w.WriteHeader(http.StatusSeeOther)
	return nil
}

// endSessionURL is the provider's end_session_endpoint with id_token_hint,
// client_id and post_logout_redirect_uri, or "" when the provider has none
// or cannot be reached quickly (the local logout has happened regardless).
func (p *PKCEAuth) endSessionURL(r *http.Request, s *activeSession) string {
	ctx, cancel := context.WithTimeout(r.Context(), min(time.Duration(p.Timeout), 3*time.Second))
	defer cancel()
	st, err := p.provider.get(ctx)
	if err != nil || st.endSession == "" {
		return ""
	}
	u, err := url.Parse(st.endSession)
	if err != nil {
		return ""
	}
	q := u.Query()
	if s.IDToken != "" {
		q.Set("id_token_hint", s.IDToken)
	}
	q.Set("client_id", p.ClientID)
	q.Set("post_logout_redirect_uri", p.origin(r)+p.PostLogoutRedirect)
	u.RawQuery = q.Encode()
	return u.String()
}

// crossSite reports a logout request started by another site, which must
// not be able to log users out (a CSRF nuisance). Browsers send
// Sec-Fetch-Site; older ones only Origin, on POST. origin is this site's.
func crossSite(r *http.Request, origin string) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return true
	}
	if sent := r.Header.Get("Origin"); sent != "" && sent != "null" {
		return sent != origin
	}
	return r.Header.Get("Origin") == "null"
}
