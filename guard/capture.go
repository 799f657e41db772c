package pkceguard

import (
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// captureWriter watches the server's response for a redirect that delivers
// an authorization code to a client, and binds that code to the challenge of
// the authorization request it answers before the redirect goes out
// unchanged.
//
// It sees only the Location of 3xx responses: a server that hands the code
// over in an HTML page (response_mode=form_post, JavaScript redirects)
// leaves it unbound, and the token request for it is refused.
type captureWriter struct {
	*caddyhttp.ResponseWriterWrapper
	g       *Guard
	r       *http.Request
	current *binding // the request's own pending authorization, if any
	done    bool
}

// capture wraps w so that a code redirect in the response to r is bound.
// current is the authorization request r itself makes, if any: a server
// with a live session answers it with the code at once.
func (g *Guard) capture(w http.ResponseWriter, r *http.Request, current *binding) http.ResponseWriter {
	return &captureWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, g: g, r: r, current: current}
}

// WriteHeader binds the code of a redirect, then writes the header.
func (cw *captureWriter) WriteHeader(status int) {
	if !cw.done && status >= 200 {
		cw.done = true
		if status >= 300 && status < 400 {
			cw.g.bindCode(cw.r, cw.Header(), cw.current)
		}
	}
	cw.ResponseWriter.WriteHeader(status)
}

// Write marks the response as started (an implicit 200).
func (cw *captureWriter) Write(b []byte) (int, error) {
	cw.done = true
	return cw.ResponseWriter.Write(b)
}

// ReadFrom marks the response as started (an implicit 200).
func (cw *captureWriter) ReadFrom(r io.Reader) (int64, error) {
	cw.done = true
	return cw.ResponseWriterWrapper.ReadFrom(r)
}

// bindCode binds the code in the Location of a redirect to the pending
// authorization request it answers, found in order: the request's own
// authorization request, its pending-request cookies, the state record. A
// code goes to a client only where the pending request's redirect_uri
// points (scheme, host and path), so any other redirect binds nothing.
func (g *Guard) bindCode(r *http.Request, h http.Header, current *binding) {
	loc := h.Get("Location")
	if loc == "" {
		return
	}
	target, code, state, ok := codeRedirect(requestURL(r), loc)
	if !ok {
		return
	}
	ctx := r.Context()
	var b *binding
	if current != nil && current.matchesRedirect(target, state) {
		b = current
	} else {
		b = g.pendingFromCookies(r, target, state)
	}
	if state != "" {
		// Consume the state record in any case: it served its one request.
		rec, err := g.takeBinding(ctx, stateKey(target, state))
		if err != nil {
			g.logError("reading the pending request of a code redirect", err)
		}
		if b == nil && rec != nil && rec.matchesRedirect(target, state) {
			b = rec
		}
	}
	if b == nil {
		if c := g.logger.Check(zapcore.DebugLevel, "code redirect without a remembered PKCE authorization request; the code stays unbound"); c != nil {
			c.Write(zap.String("redirect_target", target))
		}
		return
	}
	bound := *b
	bound.State = nil
	bound.Expires = now().Add(time.Duration(g.BindingLifetime)).Unix()
	if err := g.putBinding(ctx, codeKey(code), &bound); err != nil {
		// The token request for this code will be refused: fail closed.
		g.logError("binding an authorization code", err)
		return
	}
	clearPendingCookie(h, b, r.TLS != nil)
	if c := g.logger.Check(zapcore.DebugLevel, "authorization code bound to its PKCE challenge"); c != nil {
		c.Write(zap.String("client_id", b.ClientID))
	}
}

// codeRedirect reads a Location, resolved against base, as a redirect
// delivering an authorization code: it returns the target (see
// redirectTarget), the code and the state that came with it. ok is false
// when there is no single, unambiguous code.
func codeRedirect(base *url.URL, location string) (target, code, state string, ok bool) {
	u, err := base.Parse(location)
	if err != nil {
		return "", "", "", false
	}
	var found url.Values
	for _, raw := range []string{u.RawQuery, u.EscapedFragment()} {
		if raw == "" {
			continue
		}
		vals, err := url.ParseQuery(raw)
		if err != nil {
			return "", "", "", false
		}
		if _, has := vals["code"]; !has {
			continue
		}
		if found != nil {
			return "", "", "", false // a code in the query and the fragment
		}
		found = vals
	}
	if found == nil || len(found["code"]) != 1 || found.Get("code") == "" || len(found["state"]) > 1 {
		return "", "", "", false
	}
	return redirectTarget(u), found.Get("code"), found.Get("state"), true
}

// requestURL is the absolute URL of r, against which a relative Location
// is resolved.
func requestURL(r *http.Request) *url.URL {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return &url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath}
}
