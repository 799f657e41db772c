package pkceauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI adds pkce_auth routes to Caddy's admin endpoint:
//
//	POST /pkce_auth/revoke   {"subject": "<sub>"}
//
// ends every session of that subject (the ID token's `sub`) in every
// server-side session store (redis, caddy_storage) used by a loaded
// pkce_auth handler, and answers
// `{"subject": "<sub>", "revoked": <sessions ended>, "stores": <stores>}`.
// This instance forgets the sessions at once; other instances sharing the
// store within their session cache_ttl. Sessions in cookie mode cannot be
// revoked: they live only in the browser (rotate session_keys to end all).
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.pkce_auth",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the admin routes.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/pkce_auth/revoke", Handler: caddy.AdminHandlerFunc(a.handleRevoke)}}
}

// revokeRequest is the body of POST /pkce_auth/revoke.
type revokeRequest struct {
	Subject string `json:"subject"`
}

// revokeResponse is its answer.
type revokeResponse struct {
	Subject string `json:"subject"`
	Revoked int    `json:"revoked"`
	Stores  int    `json:"stores"`
}

func (a *AdminAPI) handleRevoke(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("use POST")}
	}
	var req revokeRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf(`body must be JSON {"subject": "<sub>"}: %v`, err)}
	}
	if req.Subject == "" {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New(`subject is required: {"subject": "<sub>"}`)}
	}
	n, stores, err := revokeSubject(r, req.Subject)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
	}
	if stores == 0 {
		return caddy.APIError{HTTPStatus: http.StatusConflict,
			Err: errors.New("no loaded pkce_auth handler uses a server-side session store (redis or caddy_storage); cookie sessions cannot be revoked")}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(revokeResponse{Subject: req.Subject, Revoked: n, Stores: stores})
}

// revokeSubject ends the subject's sessions once in every distinct store,
// then drops them from every handler's cache.
func revokeSubject(r *http.Request, subject string) (revoked, stores int, err error) {
	byStore := map[string][]*PKCEAuth{}
	for _, p := range serverHandlers() {
		id := p.server.backend.identity()
		byStore[id] = append(byStore[id], p)
	}
	ids := make([]string, 0, len(byStore))
	for id := range byStore {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var errs []error
	for _, id := range ids {
		ps := byStore[id]
		n, err := ps[0].server.backend.revokeSubject(r.Context(), subject)
		revoked += n
		if err != nil {
			errs = append(errs, fmt.Errorf("%s store: %v", ps[0].server.backend.kind(), err))
		}
		for _, p := range ps {
			p.server.forgetSubject(subject)
		}
		if c := ps[0].logger.Check(zap.InfoLevel, "sessions revoked"); c != nil {
			c.Write(zap.String("subject", subject), zap.Int("count", n), zap.String("store", ps[0].server.backend.kind()),
				zap.String("remote_ip", remoteIP(r)))
		}
	}
	return revoked, len(ids), errors.Join(errs...)
}

// Interface guards
var _ caddy.AdminRouter = (*AdminAPI)(nil)
