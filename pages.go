package pkceauth

import (
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// fail answers an error. When the server has handle_errors routes the error
// goes to them as caddyhttp.Error (they can read {http.error.status_code}
// and {http.error.message}); otherwise a small page is written here,
// since Caddy alone would answer an empty body.
func (p *PKCEAuth) fail(w http.ResponseWriter, r *http.Request, status int, title, detail string) error {
	if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv.Errors != nil && len(srv.Errors.Routes) > 0 {
		return caddyhttp.Error(status, fmt.Errorf("%s: %s", title, detail))
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if wantsHTML(r) {
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		w.WriteHeader(status)
		_ = errorPage.Execute(w, map[string]any{"Status": status, "Title": title, "Detail": detail})
		return nil
	}
	writeJSONError(w, status, title, detail)
	return nil
}

// writeJSONError writes the JSON error body API clients get:
// {"status", "error", "error_description"}.
func writeJSONError(w http.ResponseWriter, status int, title, detail string) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(marshalJSON(map[string]any{"status": status, "error": title, "error_description": detail}))
}

// providerError answers a failure to reach or use the provider.
func (p *PKCEAuth) providerError(w http.ResponseWriter, r *http.Request, err error) error {
	p.metrics.providerUnavailable()
	if errors.Is(err, errProviderUnavailable) {
		w.Header().Set("Retry-After", "10")
		return p.fail(w, r, http.StatusServiceUnavailable, "Identity provider unreachable",
			"Sign-in is unavailable because the identity provider cannot be reached. Please try again in a moment.")
	}
	// A configuration mismatch, already logged by discovery.
	return p.fail(w, r, http.StatusServiceUnavailable, "Sign-in misconfigured",
		"Sign-in is unavailable because of a configuration problem with the identity provider. The site's administrator has been told in the server log.")
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

var errorPage = template.Must(template.New("error").Parse(strings.TrimSpace(`
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Status}} {{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}p{line-height:1.5}a{color:#0645ad}</style>
</head><body>
<h1>{{.Title}}</h1>
<p>{{.Detail}}</p>
<p><a href="/">Back to the site</a></p>
<p style="color:#888;font-size:.8rem">HTTP {{.Status}}</p>
</body></html>
`)))
