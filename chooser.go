package pkceauth

import (
	"html/template"
	"net/http"
	"strings"
)

// The provider chooser. A navigation without a session on a route with
// several providers gets a page listing them. Each link is the page's own
// URL with providerParam=<name> appended; the request it makes is an
// ordinary navigation to this route, which starts that provider's login
// returning to the URL without the parameter. A link is therefore nothing
// a cross-site page could not do already by linking to the protected URL
// itself (which starts a login returning there): no separate start
// endpoint takes a return path from the query.

// providerParam selects the provider of a login started from the chooser.
// It is read only from the end of the query of a navigation without a
// session, and only names the route's own providers.
const providerParam = "pkce_provider"

// chooseProvider starts the login of the provider the chooser link names,
// or shows the chooser.
func (p *PKCEAuth) chooseProvider(w http.ResponseWriter, r *http.Request) error {
	if rest, name, ok := cutProviderParam(r.URL.RawQuery); ok {
		for _, c := range p.cores {
			if c.providerName == name {
				u := *r.URL
				u.RawQuery, u.ForceQuery = rest, false
				return c.startLoginTo(w, r, c.cookies(r), u.RequestURI(), p.access)
			}
		}
	}

	back := returnPathOrRoot(r.URL.RequestURI())
	sep := "?"
	if strings.Contains(back, "?") {
		sep = "&"
	}
	type choice struct{ Name, Href string }
	choices := make([]choice, 0, len(p.cores))
	for _, c := range p.cores {
		choices = append(choices, choice{Name: c.displayName, Href: back + sep + providerParam + "=" + c.providerName})
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	// Not signed in: 401 like any request without a session, so that
	// nothing mistakes the page for the resource.
	h.Set("WWW-Authenticate", "Bearer")
	w.WriteHeader(http.StatusUnauthorized)
	if r.Method == http.MethodHead {
		return nil
	}
	return chooserPage.Execute(w, choices)
}

// cutProviderParam finds providerParam=<name> as the last parameter of a
// raw query and returns the query without it. Chooser links append it
// there and provider names need no escaping, so the exact text is looked
// for: decoding and re-encoding the rest could change it.
func cutProviderParam(rawQuery string) (rest, name string, ok bool) {
	key := providerParam + "="
	i := strings.LastIndex(rawQuery, key)
	if i < 0 || i > 0 && rawQuery[i-1] != '&' {
		return "", "", false
	}
	name = rawQuery[i+len(key):]
	if !validProviderName(name) {
		return "", "", false
	}
	return strings.TrimSuffix(rawQuery[:i], "&"), name, true
}

// chooserPage is escaped by html/template: display names come from the
// config but are still treated as text.
var chooserPage = template.Must(template.New("chooser").Parse(strings.TrimSpace(`
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}ul{list-style:none;padding:0}li{margin:.6rem 0}a{display:inline-block;padding:.6rem 1rem;border:1px solid #0645ad;border-radius:.3rem;color:#0645ad;text-decoration:none}</style>
</head><body>
<h1>Sign in</h1>
<p>Choose how to sign in:</p>
<ul>
{{range .}}<li><a href="{{.Href}}">{{.Name}}</a></li>
{{end}}</ul>
</body></html>
`)))
