package testop

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"
)

func (p *Provider) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(DiscoveryPath, p.endpoint(func(c *Counts) *int { return &c.Discovery }, p.handleDiscovery))
	mux.HandleFunc(JWKSPath, p.endpoint(func(c *Counts) *int { return &c.JWKS }, p.handleJWKS))
	mux.HandleFunc(AuthorizePath, p.endpoint(func(c *Counts) *int { return &c.Authorize }, p.handleAuthorize))
	mux.HandleFunc(TokenPath, p.endpoint(func(c *Counts) *int { return &c.Token }, p.handleToken))
	mux.HandleFunc(UserinfoPath, p.endpoint(func(c *Counts) *int { return &c.Userinfo }, p.handleUserinfo))
	mux.HandleFunc(EndSessionPath, p.endpoint(func(c *Counts) *int { return &c.EndSession }, p.handleEndSession))
	return mux
}

// endpoint counts the request, then waits out Misbehaviour.Delay unless the
// client or the test goes away first, then runs h.
func (p *Provider) endpoint(counter func(*Counts) *int, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		*counter(&p.rec.counts)++
		delay := p.mis.Delay
		p.mu.Unlock()
		if delay > 0 {
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-r.Context().Done():
				return
			case <-p.stop:
				return
			}
		}
		h(w, r)
	}
}

// oauthError is an OAuth 2.0 error (RFC 6749 4.1.2.1, 5.2).
type oauthError struct {
	status      int    // HTTP status when answered directly
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func newError(status int, code, format string, args ...any) *oauthError {
	return &oauthError{status: status, Code: code, Description: fmt.Sprintf(format, args...)}
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Description }

func writeJSON(w http.ResponseWriter, status int, v any) {
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// noStore marks a response that carries tokens or credentials-related errors
// as uncacheable (RFC 6749 5.1).
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// repeatedParam names a parameter sent more than once, which RFC 6749 3.1
// forbids, or returns "".
func repeatedParam(v url.Values) string {
	keys := make([]string, 0, len(v))
	for k, vs := range v {
		if len(vs) > 1 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	slices.Sort(keys)
	return keys[0]
}

// requestParams returns the query of a GET or the form body of a POST.
func requestParams(r *http.Request) (url.Values, error) {
	switch r.Method {
	case http.MethodGet:
		return r.URL.Query(), nil
	case http.MethodPost:
		if err := r.ParseForm(); err != nil {
			return nil, err
		}
		return r.PostForm, nil
	}
	return nil, fmt.Errorf("method %s not allowed", r.Method)
}

// allowedRedirect reports whether raw is an acceptable redirect target:
// listed exactly in allow, or, when allow is empty, any absolute http(s) URI
// without a fragment.
func allowedRedirect(raw string, allow []string) bool {
	if raw == "" {
		return false
	}
	if len(allow) > 0 {
		return slices.Contains(allow, raw)
	}
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Fragment == "" && !u.ForceQuery
}

// withParams adds params to the query of target, keeping the query it has
// (RFC 6749 3.1.2).
func withParams(target string, params url.Values) string {
	u, _ := url.Parse(target) // validated by allowedRedirect
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	return u.String()
}
