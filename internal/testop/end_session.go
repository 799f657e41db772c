package testop

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
)

// handleEndSession is RP-initiated logout (OpenID Connect RP-Initiated
// Logout 1.0). A valid id_token_hint ends that login session: the grants
// issued in it are revoked.
func (p *Provider) handleEndSession(w http.ResponseWriter, r *http.Request) {
	if p.misbehaviour().NoEndSession {
		http.NotFound(w, r)
		return
	}
	params, err := requestParams(r)
	if err != nil {
		http.Error(w, "end session request: "+err.Error(), http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.rec.endSession = append(p.rec.endSession, cloneValues(params))
	p.mu.Unlock()

	if k := repeatedParam(params); k != "" {
		http.Error(w, "parameter "+k+" is repeated", http.StatusBadRequest)
		return
	}
	clientID := params.Get("client_id")
	if clientID != "" && clientID != p.cfg.ClientID {
		http.Error(w, "unknown client_id "+clientID, http.StatusBadRequest)
		return
	}
	sid := ""
	if hint := params.Get("id_token_hint"); hint != "" {
		if sid, err = p.checkIDTokenHint(hint); err != nil {
			http.Error(w, "invalid id_token_hint: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	target := params.Get("post_logout_redirect_uri")
	if target != "" {
		// The provider must know the client to trust the target (Keycloak,
		// Zitadel and PingFederate refuse otherwise).
		if clientID == "" && params.Get("id_token_hint") == "" {
			http.Error(w, "post_logout_redirect_uri needs client_id or id_token_hint", http.StatusBadRequest)
			return
		}
		if !allowedRedirect(target, p.cfg.PostLogoutRedirectURIs) {
			http.Error(w, "post_logout_redirect_uri "+target+" is not registered", http.StatusBadRequest)
			return
		}
	}
	if sid != "" {
		p.mu.Lock()
		p.store.revokeSession(sid)
		p.mu.Unlock()
	}
	if target == "" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("logged out\n"))
		return
	}
	q := url.Values{}
	if state := params.Get("state"); state != "" {
		q.Set("state", state)
	}
	http.Redirect(w, r, withParams(target, q), http.StatusFound)
}

// checkIDTokenHint accepts an ID token this provider signed for the client,
// expired or not (the spec allows expired hints), and returns its sid.
func (p *Provider) checkIDTokenHint(raw string) (string, error) {
	payload, _, err := p.verifyOwnJWT(raw)
	if err != nil {
		return "", err
	}
	var c struct {
		Iss string          `json:"iss"`
		Aud json.RawMessage `json:"aud"`
		Sid string          `json:"sid"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", err
	}
	if c.Iss != p.issuer {
		return "", errors.New("issued by another issuer")
	}
	var aud []string
	if err := json.Unmarshal(c.Aud, &aud); err != nil {
		var one string
		if err := json.Unmarshal(c.Aud, &one); err != nil {
			return "", fmt.Errorf("bad aud: %v", err)
		}
		aud = []string{one}
	}
	if !slices.Contains(aud, p.cfg.ClientID) {
		return "", fmt.Errorf("audience %v does not include %s", aud, p.cfg.ClientID)
	}
	return c.Sid, nil
}
