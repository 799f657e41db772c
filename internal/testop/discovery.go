package testop

import "net/http"

func (p *Provider) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	m := p.misbehaviour()
	if m.DiscoveryDown {
		http.Error(w, "discovery is down (testop DiscoveryDown)", http.StatusServiceUnavailable)
		return
	}
	authMethods := []string{"none"}
	if p.cfg.ClientSecret != "" {
		authMethods = []string{"client_secret_basic", "client_secret_post"}
	}
	doc := map[string]any{
		"issuer":                                p.issuer,
		"authorization_endpoint":                p.url(AuthorizePath),
		"token_endpoint":                        p.url(TokenPath),
		"userinfo_endpoint":                     p.url(UserinfoPath),
		"jwks_uri":                              p.url(JWKSPath),
		"end_session_endpoint":                  p.url(EndSessionPath),
		"response_types_supported":              []string{"code"},
		"response_modes_supported":              []string{"query", "form_post"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{p.cfg.SigningAlg},
		"token_endpoint_auth_methods_supported": authMethods,
		"code_challenge_methods_supported":      []string{"S256"},
		"scopes_supported":                      []string{"openid", "profile", "email", "groups", "offline_access"},
		"claims_supported": []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "acr", "nonce", "azp", "sid",
			"email", "email_verified", "name", "preferred_username", "groups"},
		"authorization_response_iss_parameter_supported": true,
	}
	switch {
	case m.NoPKCEMethodsInDiscovery:
		delete(doc, "code_challenge_methods_supported")
	case m.PlainOnlyInDiscovery:
		doc["code_challenge_methods_supported"] = []string{"plain"}
	}
	if m.NoEndSession {
		delete(doc, "end_session_endpoint")
	}
	writeJSON(w, http.StatusOK, doc)
}

func (p *Provider) handleJWKS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	writeJSON(w, http.StatusOK, p.jwks())
}
