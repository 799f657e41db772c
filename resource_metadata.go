package pkceauth

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// ResourceMetadata publishes OAuth 2.0 Protected Resource Metadata (RFC
// 9728), which tells API clients which authorization server issues tokens
// for this resource and which scopes it knows:
//
//	{"resource": "...", "authorization_servers": ["<issuer>"],
//	 "scopes_supported": [...], "bearer_methods_supported": ["header"]}
//
// It is served, without authentication, at /.well-known/oauth-protected-resource
// followed by the resource's path (RFC 9728 §3.1: for the resource
// https://api.example.com/v1 that is
// /.well-known/oauth-protected-resource/v1), so the routes pkce_auth
// handles must include that path. The WWW-Authenticate challenges then
// carry its URL as resource_metadata (§5.1).
type ResourceMetadata struct {
	// The protected resource's identifier: an https URL without fragment,
	// which clients compare with the URL they used. Default: the origin
	// of each request (scheme and host, no path), so the document is at
	// /.well-known/oauth-protected-resource.
	Resource string `json:"resource,omitempty"`

	// The scopes listed as scopes_supported. Default: the bearer
	// required_scopes (the member is left out when there are none).
	ScopesSupported []string `json:"scopes_supported,omitempty"`
}

// wellKnownResourcePath is RFC 9728's well-known URI suffix.
const wellKnownResourcePath = "/.well-known/oauth-protected-resource"

// resourceMetadata is the runtime form: the path it is served at, and the
// document when it does not depend on the request.
type resourceMetadata struct {
	p        *PKCEAuth // the provider whose issuer is the authorization server
	path     string    // where the document is served
	query    string    // the resource's query, which the URL keeps
	resource string    // "" when taken from each request's origin
	metaURL  string    // the document's URL, when resource is configured
	scopes   []string
}

func newResourceMetadata(p *PKCEAuth, cfg *ResourceMetadata, requiredScopes []string) *resourceMetadata {
	m := &resourceMetadata{p: p, path: wellKnownResourcePath, resource: cfg.Resource, scopes: cfg.ScopesSupported}
	if m.scopes == nil {
		m.scopes = requiredScopes
	}
	if cfg.Resource != "" {
		u, _ := url.Parse(cfg.Resource) // checked by validate
		m.path, m.query = metadataLocation(u)
		m.metaURL = (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: m.path, RawQuery: m.query}).String()
	}
	return m
}

// metadataLocation applies RFC 9728 §3.1: the well-known suffix goes
// between the host and the resource's path (a terminating slash after the
// host removed), the query is kept.
func metadataLocation(u *url.URL) (path, query string) {
	p := u.EscapedPath()
	if p == "/" {
		p = ""
	}
	return wellKnownResourcePath + p, u.RawQuery
}

func (m *resourceMetadata) matches(r *http.Request) bool {
	return r.URL.Path == m.path && (m.query == "" || r.URL.RawQuery == m.query)
}

// url is the document's URL for the challenge, or "" when the request's
// origin cannot be put in a quoted string.
func (m *resourceMetadata) url(r *http.Request) string {
	if m.metaURL != "" {
		return m.metaURL
	}
	u := m.p.origin(r) + wellKnownResourcePath
	if strings.ContainsAny(u, "\"\\") {
		return ""
	}
	return u
}

func (m *resourceMetadata) serve(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return m.p.fail(w, r, http.StatusMethodNotAllowed, "Method not allowed", "Read the resource metadata with GET.")
	}
	resource := m.resource
	if resource == "" {
		resource = m.p.origin(r)
	}
	doc := map[string]any{
		"resource":                 resource,
		"authorization_servers":    []string{m.p.Issuer},
		"bearer_methods_supported": []string{"header"},
	}
	if len(m.scopes) > 0 {
		doc["scopes_supported"] = m.scopes
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=3600")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(marshalJSON(doc))
	}
	return nil
}

// validate checks the metadata settings; m may be nil.
func (m *ResourceMetadata) validate() error {
	if m == nil {
		return nil
	}
	if m.Resource != "" {
		u, err := url.Parse(m.Resource)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
			return fmt.Errorf("bearer: resource_metadata: resource must be an absolute https URL (RFC 9728 §1.2), not %q", m.Resource)
		}
		if u.Fragment != "" || strings.HasSuffix(m.Resource, "#") {
			return errors.New("bearer: resource_metadata: resource must not have a #fragment")
		}
		if strings.ContainsAny(m.Resource, "\"\\ ") {
			return fmt.Errorf("bearer: resource_metadata: resource %q has characters a URL cannot have", m.Resource)
		}
	}
	for _, s := range m.ScopesSupported {
		if !validScopeToken(s) {
			return fmt.Errorf("bearer: resource_metadata: scopes_supported: %q is not a valid scope", s)
		}
	}
	return nil
}
