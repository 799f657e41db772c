package pkceguard

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-pkce/caddy-pkce/internal/errpage"
)

// errorPage answers an error that must not go to the client's redirect_uri:
// as caddyhttp.Error when the server has handle_errors routes, else with a
// small page (internal/errpage).
func (g *Guard) errorPage(w http.ResponseWriter, r *http.Request, status int, title, detail string) error {
	if errpage.Routed(r) {
		return caddyhttp.Error(status, fmt.Errorf("%s: %s", title, detail))
	}
	errpage.HTML(w, errpage.Page{Status: status, Title: title, Detail: detail,
		Note: "The application that sent you here needs to be fixed; going back and trying again will not help."})
	return nil
}

// unavailable answers a request the guard cannot decide on because its
// store or key is unavailable: it fails closed.
func (g *Guard) unavailable(w http.ResponseWriter, r *http.Request, doing string, err error) error {
	g.logError(doing, err)
	g.metrics.refused(reasonStoreError)
	w.Header().Set("Retry-After", "5")
	return g.errorPage(w, r, http.StatusServiceUnavailable, "Sign-in temporarily unavailable",
		"The authorization request cannot be checked right now. Please try again in a moment.")
}

// refused counts and logs a refusal; never with codes, verifiers,
// challenges or state.
func (g *Guard) refused(r *http.Request, reason, clientID string) {
	g.metrics.refused(reason)
	if c := g.logger.Check(zapcore.InfoLevel, "request refused"); c != nil {
		c.Write(zap.String("reason", reason), zap.String("client_id", clientID), zap.String("path", r.URL.Path))
	}
}

// logError logs a technical failure.
func (g *Guard) logError(doing string, err error) {
	if c := g.logger.Check(zapcore.ErrorLevel, doing); c != nil {
		c.Write(zap.Error(err))
	}
}
