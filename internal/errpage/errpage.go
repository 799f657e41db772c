// Package errpage answers the errors of the module's handlers the same way:
// to the server's handle_errors routes when it has some, otherwise with a
// small page of its own, since Caddy alone would answer an empty body.
package errpage

import (
	"encoding/json"
	"html/template"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Routed reports whether the request's server has handle_errors routes,
// which then get the error as a caddyhttp.Error (they can read
// {http.error.status_code} and {http.error.message}).
func Routed(r *http.Request) bool {
	srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	return ok && srv.Errors != nil && len(srv.Errors.Routes) > 0
}

// Page is an error page's text. Note, when set, replaces the link back to
// the site (for pages where going back cannot help).
type Page struct {
	Status int
	Title  string
	Detail string
	Note   string
}

// HTML writes p as an HTML page: no script, no caching, nothing framed.
func HTML(w http.ResponseWriter, p Page) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(p.Status)
	_ = page.Execute(w, p)
}

// JSON writes the error body API clients get:
// {"status", "error", "error_description"}.
func JSON(w http.ResponseWriter, status int, title, detail string) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{"status": status, "error": title, "error_description": detail})
	_, _ = w.Write(b)
}

// page escapes every value (html/template): titles and details may carry
// text from the provider or the request.
var page = template.Must(template.New("error").Parse(strings.TrimSpace(`
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Status}} {{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}p{line-height:1.5}a{color:#0645ad}</style>
</head><body>
<h1>{{.Title}}</h1>
<p>{{.Detail}}</p>
{{if .Note}}<p style="color:#888;font-size:.8rem">HTTP {{.Status}}. {{.Note}}</p>{{else}}<p><a href="/">Back to the site</a></p>
<p style="color:#888;font-size:.8rem">HTTP {{.Status}}</p>{{end}}
</body></html>
`)))
