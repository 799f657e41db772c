package pkceguard

import (
	"fmt"
	"html/template"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// errorPage answers an error that must not go to the client's redirect_uri.
// When the server has handle_errors routes the error goes to them as a
// caddyhttp.Error (they can read {http.error.status_code} and
// {http.error.message}); otherwise a small page is written here, since
// Caddy alone would answer an empty body.
func (g *Guard) errorPage(w http.ResponseWriter, r *http.Request, status int, title, detail string) error {
	if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv.Errors != nil && len(srv.Errors.Routes) > 0 {
		return caddyhttp.Error(status, fmt.Errorf("%s: %s", title, detail))
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(status)
	_ = pageTemplate.Execute(w, map[string]any{"Status": status, "Title": title, "Detail": detail})
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

var pageTemplate = template.Must(template.New("error").Parse(strings.TrimSpace(`
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Status}} {{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}p{line-height:1.5}</style>
</head><body>
<h1>{{.Title}}</h1>
<p>{{.Detail}}</p>
<p style="color:#888;font-size:.8rem">HTTP {{.Status}}. The application that sent you here needs to be fixed; going back and trying again will not help.</p>
</body></html>
`)))
