package pkceguard

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// legacyServer is a stand-in for an old OAuth 2.0 authorization server that
// knows nothing of PKCE: it ignores code_challenge and code_verifier, and
// otherwise behaves as RFC 6749 says (registered redirect URIs, single-use
// codes bound to client and redirect_uri, client authentication for
// confidential clients). It shows a login page, so the code is delivered on
// a later request than the authorization request, as with a real server.
// It records every request it sees, so tests can tell whether the guard let
// one through.
type legacyServer struct {
	mu      sync.Mutex
	clients map[string]legacyClient
	logins  map[string]url.Values // pending logins: id -> authorization request
	codes   map[string]*legacyCode
	seen    []seenRequest
}

type legacyClient struct {
	secret       string // "" for a public client
	redirectURIs []string
}

type legacyCode struct {
	clientID    string
	redirectURI string // "" when the request had none
	used        bool
}

type seenRequest struct {
	method string
	path   string
	params url.Values
}

// Clients of the legacy server.
const (
	publicApp     = "public-app"
	publicAppCB   = "https://app.example/cb"
	otherApp      = "other-app"
	otherAppCB    = "https://other.example/cb"
	confApp       = "conf-app"
	confAppSecret = "conf-secret"
	confAppCB     = "https://conf.example/cb"
	exemptApp     = "exempt-app"
	exemptAppCB   = "https://exempt.example/cb"
	nativeApp     = "native-app"
	nativeAppCB   = "com.example.app:/oauth2redirect"
	legacyUser    = "alice"
	legacyPass    = "alice-password"
)

func newLegacyServer() *legacyServer {
	return &legacyServer{
		clients: map[string]legacyClient{
			publicApp: {redirectURIs: []string{publicAppCB}},
			otherApp:  {redirectURIs: []string{otherAppCB}},
			confApp:   {secret: confAppSecret, redirectURIs: []string{confAppCB}},
			exemptApp: {redirectURIs: []string{exemptAppCB}},
			nativeApp: {redirectURIs: []string{nativeAppCB}},
		},
		logins: map[string]url.Values{},
		codes:  map[string]*legacyCode{},
	}
}

// count returns how many requests to path the server has seen.
func (s *legacyServer) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.seen {
		if r.path == path {
			n++
		}
	}
	return n
}

// last returns the last request to path the server saw.
func (s *legacyServer) last(path string) (seenRequest, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.seen) - 1; i >= 0; i-- {
		if s.seen[i].path == path {
			return s.seen[i], true
		}
	}
	return seenRequest{}, false
}

func (s *legacyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	s.mu.Lock()
	s.seen = append(s.seen, seenRequest{method: r.Method, path: r.URL.Path, params: cloneValues(r.Form)})
	s.mu.Unlock()
	switch r.URL.Path {
	case "/authorize":
		s.authorize(w, r)
	case "/login":
		s.login(w, r)
	case "/oauth/token":
		s.token(w, r)
	case "/.well-known/openid-configuration":
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ETag", `"legacy-1"`)
		base := "http://" + r.Host
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                   base,
			"authorization_endpoint":   base + "/authorize",
			"token_endpoint":           base + "/oauth/token",
			"response_types_supported": []string{"code"},
		})
	default:
		http.NotFound(w, r)
	}
}

func (s *legacyServer) authorize(w http.ResponseWriter, r *http.Request) {
	clientID := r.Form.Get("client_id")
	s.mu.Lock()
	c, ok := s.clients[clientID]
	s.mu.Unlock()
	redirectURI := r.Form.Get("redirect_uri")
	if !ok || (redirectURI != "" && !slices.Contains(c.redirectURIs, redirectURI)) {
		http.Error(w, "unknown client or redirect_uri", http.StatusBadRequest)
		return
	}
	if r.Form.Get("response_type") != "code" {
		http.Redirect(w, r, addParams(c.redirectURIs[0], url.Values{"error": {"unsupported_response_type"}}), http.StatusFound)
		return
	}
	if ck, err := r.Cookie("legacy_session"); err == nil && ck.Value == legacyUser {
		s.issueCode(w, r, r.Form)
		return
	}
	id := randomString()
	s.mu.Lock()
	s.logins[id] = cloneValues(r.Form)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<form method="post" action="/login"><input type="hidden" name="login" value="%s">`+
		`<input name="username"><input name="password" type="password"></form>`, html.EscapeString(id))
}

func (s *legacyServer) login(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	req, ok := s.logins[r.PostForm.Get("login")]
	delete(s.logins, r.PostForm.Get("login"))
	s.mu.Unlock()
	if !ok || r.PostForm.Get("username") != legacyUser || r.PostForm.Get("password") != legacyPass {
		http.Error(w, "login failed", http.StatusUnauthorized)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: "legacy_session", Value: legacyUser, Path: "/"})
	s.issueCode(w, r, req)
}

func (s *legacyServer) issueCode(w http.ResponseWriter, r *http.Request, req url.Values) {
	clientID := req.Get("client_id")
	s.mu.Lock()
	c := s.clients[clientID]
	code := randomString()
	s.codes[code] = &legacyCode{clientID: clientID, redirectURI: req.Get("redirect_uri")}
	s.mu.Unlock()
	target := req.Get("redirect_uri")
	if target == "" {
		target = c.redirectURIs[0]
	}
	resp := url.Values{"code": {code}}
	if st := req.Get("state"); st != "" {
		resp.Set("state", st)
	}
	if req.Get("response_mode") == "form_post" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<form method="post" action="%s"><input type="hidden" name="code" value="%s"></form>`, html.EscapeString(target), html.EscapeString(code))
		return
	}
	if req.Get("response_mode") == "fragment" {
		http.Redirect(w, r, target+"#"+resp.Encode(), http.StatusFound)
		return
	}
	http.Redirect(w, r, addParams(target, resp), http.StatusFound)
}

func (s *legacyServer) token(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, code string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
	}
	clientID, secret, basic := r.BasicAuth()
	if basic {
		clientID, _ = url.QueryUnescape(clientID)
		secret, _ = url.QueryUnescape(secret)
	} else {
		clientID, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[clientID]
	if !ok || c.secret != secret {
		fail(http.StatusUnauthorized, "invalid_client")
		return
	}
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		code := s.codes[r.PostForm.Get("code")]
		if code == nil || code.used || code.clientID != clientID || code.redirectURI != r.PostForm.Get("redirect_uri") {
			fail(http.StatusBadRequest, "invalid_grant")
			return
		}
		code.used = true
	case "client_credentials":
		if c.secret == "" {
			fail(http.StatusBadRequest, "unauthorized_client")
			return
		}
	default:
		fail(http.StatusBadRequest, "unsupported_grant_type")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at-" + randomString(), "token_type": "Bearer", "expires_in": 3600})
}

func addParams(target string, vals url.Values) string {
	sep := "?"
	if strings.Contains(target, "?") {
		sep = "&"
	}
	return target + sep + vals.Encode()
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

func randomString() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
