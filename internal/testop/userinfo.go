package testop

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// handleUserinfo answers the claims of the access token's user (OIDC Core
// 5.3), taking the token from the Authorization header or, for POST, the
// form (RFC 6750 2.1, 2.2).
func (p *Provider) handleUserinfo(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "userinfo takes GET or POST", http.StatusMethodNotAllowed)
		return
	}
	token := bearerToken(r)
	if token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="testop"`)
		http.Error(w, "bearer access token required", http.StatusUnauthorized)
		return
	}
	g, err := p.checkAccessToken(token)
	if err != nil {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="testop", error="invalid_token", error_description=%q`, err.Error()))
		http.Error(w, "invalid access token: "+err.Error(), http.StatusUnauthorized)
		return
	}
	p.mu.Lock()
	u, ok := p.users[g.subject]
	m := p.mis
	p.mu.Unlock()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="testop", error="invalid_token"`)
		http.Error(w, "user no longer exists", http.StatusUnauthorized)
		return
	}
	claims := u.claims()
	if m.UserinfoWrongSub {
		claims["sub"] = "someone-else-sub"
	}
	writeJSON(w, http.StatusOK, claims)
}

func bearerToken(r *http.Request) string {
	if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(tok)
	}
	if r.Method == http.MethodPost && r.ParseForm() == nil {
		return r.PostForm.Get("access_token")
	}
	return ""
}

// checkAccessToken accepts only live access tokens this provider issued.
func (p *Provider) checkAccessToken(raw string) (*grant, error) {
	payload, typ, err := p.verifyOwnJWT(raw)
	if err != nil {
		return nil, err
	}
	if typ != accessTokenType {
		return nil, fmt.Errorf("token type %q is not an access token", typ)
	}
	var c struct {
		Iss string `json:"iss"`
		Jti string `json:"jti"`
		Exp int64  `json:"exp"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case c.Iss != p.issuer:
		return nil, errors.New("issued by another issuer")
	case !p.cfg.Now().Before(time.Unix(c.Exp, 0)):
		return nil, errors.New("expired")
	}
	g := p.store.grants[p.store.access[c.Jti]]
	if g == nil || g.revoked {
		return nil, errors.New("revoked")
	}
	return g, nil
}
