package testop

import "net/url"

// TokenRequest is one request the token endpoint received, recorded before
// it was validated.
type TokenRequest struct {
	GrantType    string
	Code         string
	CodeVerifier string
	ClientID     string // from the Basic credentials if present, else the form
	RedirectURI  string
	RefreshToken string
	Scope        string
	// AuthMethod is how the client authenticated: "client_secret_basic"
	// (Authorization: Basic), "client_secret_post" (client_secret in the
	// form) or "none".
	AuthMethod string
	Form       url.Values // the whole form body
}

// Counts are requests received per endpoint, including failed ones.
type Counts struct {
	Discovery  int
	JWKS       int
	Authorize  int
	Token      int
	Userinfo   int
	EndSession int
}

type records struct {
	counts     Counts
	token      []TokenRequest
	authorize  []url.Values
	endSession []url.Values
}

// TokenRequests returns what the token endpoint received, oldest first.
func (p *Provider) TokenRequests() []TokenRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]TokenRequest, len(p.rec.token))
	for i, r := range p.rec.token {
		r.Form = cloneValues(r.Form)
		out[i] = r
	}
	return out
}

// AuthRequests returns the parameters of the authorization requests
// received (query for GET, form for POST), oldest first.
func (p *Provider) AuthRequests() []url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	return cloneAll(p.rec.authorize)
}

// EndSessionRequests returns the parameters of the end-session requests
// received, oldest first.
func (p *Provider) EndSessionRequests() []url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	return cloneAll(p.rec.endSession)
}

// Counts returns how many requests each endpoint received.
func (p *Provider) Counts() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rec.counts
}

func cloneAll(vs []url.Values) []url.Values {
	out := make([]url.Values, len(vs))
	for i, v := range vs {
		out[i] = cloneValues(v)
	}
	return out
}
