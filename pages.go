package pkceauth

import (
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-pkce/caddy-pkce/internal/errpage"
)

// fail answers an error: as caddyhttp.Error when the server has
// handle_errors routes, else with a small HTML page for browsers or JSON
// for API clients (internal/errpage).
func (p *PKCEAuth) fail(w http.ResponseWriter, r *http.Request, status int, title, detail string) error {
	if errpage.Routed(r) {
		return caddyhttp.Error(status, fmt.Errorf("%s: %s", title, detail))
	}
	if wantsHTML(r) {
		errpage.HTML(w, errpage.Page{Status: status, Title: title, Detail: detail})
		return nil
	}
	errpage.JSON(w, status, title, detail)
	return nil
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
