package testop

import (
	"html"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

var (
	s256Challenge  = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)       // BASE64URL(SHA256(verifier)), no padding
	plainChallenge = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`) // RFC 7636 4.1 verifier syntax
)

// handleAuthorize auto-approves the current user (OpenID Connect Core 3.1.2).
func (p *Provider) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	params, err := requestParams(r)
	if err != nil {
		http.Error(w, "authorization request: "+err.Error(), http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.rec.authorize = append(p.rec.authorize, cloneValues(params))
	m := p.mis
	p.mu.Unlock()

	// Without a trustworthy client and redirect_uri the error goes to the
	// user, never to the redirect_uri (RFC 6749 4.1.2.1).
	for _, k := range []string{"client_id", "redirect_uri"} {
		if len(params[k]) > 1 {
			http.Error(w, k+" is repeated", http.StatusBadRequest)
			return
		}
	}
	switch clientID := params.Get("client_id"); {
	case clientID == "":
		http.Error(w, "client_id is required", http.StatusBadRequest)
		return
	case clientID != p.cfg.ClientID:
		http.Error(w, "unknown client_id "+clientID, http.StatusBadRequest)
		return
	}
	redirectURI := params.Get("redirect_uri")
	if redirectURI == "" {
		http.Error(w, "redirect_uri is required", http.StatusBadRequest)
		return
	}
	if !allowedRedirect(redirectURI, p.cfg.RedirectURIs) {
		http.Error(w, "redirect_uri "+redirectURI+" is not registered for this client", http.StatusBadRequest)
		return
	}

	resp := authResponse{w: w, redirectURI: redirectURI, state: params.Get("state"), iss: p.issuer}
	switch m.IssParam {
	case "":
	case "omit":
		resp.iss = ""
	default:
		resp.iss = m.IssParam
	}
	switch mode := params.Get("response_mode"); mode {
	case "", "query":
	case "form_post":
		resp.formPost = true
	default:
		resp.fail(newError(0, "invalid_request", "response_mode %q is not supported", mode))
		return
	}
	if e := p.checkAuthRequest(params, m); e != nil {
		resp.fail(e)
		return
	}

	p.mu.Lock()
	now := p.cfg.Now()
	code := p.store.addCode(&authCode{
		clientID:        p.cfg.ClientID,
		redirectURI:     redirectURI,
		challenge:       params.Get("code_challenge"),
		challengeMethod: challengeMethod(params),
		nonce:           params.Get("nonce"),
		scope:           params.Get("scope"),
		subject:         p.current,
		sid:             randomToken(),
		acr:             firstField(params.Get("acr_values")),
		authTime:        now,
		expires:         now.Add(p.cfg.CodeTTL),
	})
	p.mu.Unlock()
	resp.send(url.Values{"code": {code}})
}

// firstField is the first space-separated value of s, or "". The
// provider "performs" the first authentication level the client asks for
// in acr_values (OpenID Connect Core 3.1.2.1); without acr_values its ID
// tokens carry no acr.
func firstField(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return ""
}

// challengeMethod is code_challenge_method with the RFC 7636 default.
func challengeMethod(params url.Values) string {
	if params.Get("code_challenge") == "" {
		return ""
	}
	if m := params.Get("code_challenge_method"); m != "" {
		return m
	}
	return "plain"
}

// checkAuthRequest validates what can be reported to the redirect_uri.
func (p *Provider) checkAuthRequest(params url.Values, m Misbehaviour) *oauthError {
	if k := repeatedParam(params); k != "" {
		return newError(0, "invalid_request", "parameter %s is repeated", k)
	}
	if m.AuthError != "" {
		return newError(0, m.AuthError, "the provider refused (testop AuthError)")
	}
	if rt := params.Get("response_type"); rt != "code" {
		return newError(0, "unsupported_response_type", "response_type must be code, got %q", rt)
	}
	if !slices.Contains(strings.Fields(params.Get("scope")), "openid") {
		return newError(0, "invalid_scope", "scope must contain openid")
	}
	if ma := params.Get("max_age"); ma != "" {
		if n, err := strconv.ParseUint(ma, 10, 31); err != nil || strconv.FormatUint(n, 10) != ma {
			return newError(0, "invalid_request", "max_age must be a non-negative whole number of seconds, got %q", ma)
		}
	}
	if params.Has("request") {
		return newError(0, "request_not_supported", "request objects are not supported")
	}
	if params.Has("request_uri") {
		return newError(0, "request_uri_not_supported", "request_uri is not supported")
	}
	challenge, method := params.Get("code_challenge"), params.Get("code_challenge_method")
	switch {
	case challenge == "" && method != "":
		return newError(0, "invalid_request", "code_challenge_method without code_challenge")
	case challenge == "" && !m.AcceptWithoutPKCE:
		return newError(0, "invalid_request", "code_challenge is required (PKCE S256)")
	case challenge == "":
		return nil
	}
	switch challengeMethod(params) {
	case "S256":
		if !s256Challenge.MatchString(challenge) {
			return newError(0, "invalid_request", "code_challenge must be 43 base64url characters for S256")
		}
	case "plain":
		if !m.AcceptWithoutPKCE {
			return newError(0, "invalid_request", "code_challenge_method must be S256; transform algorithm not supported")
		}
		if !plainChallenge.MatchString(challenge) {
			return newError(0, "invalid_request", "malformed plain code_challenge")
		}
	default:
		return newError(0, "invalid_request", "code_challenge_method %q is not supported", method)
	}
	return nil
}

// authResponse answers an authorization request at the client's
// redirect_uri, by redirect or by auto-submitting form (form_post).
type authResponse struct {
	w           http.ResponseWriter
	redirectURI string
	state       string
	iss         string // "" leaves the RFC 9207 parameter out
	formPost    bool
}

func (a authResponse) fail(e *oauthError) {
	a.send(url.Values{"error": {e.Code}, "error_description": {e.Description}})
}

func (a authResponse) send(params url.Values) {
	if a.state != "" {
		params.Set("state", a.state)
	}
	if a.iss != "" {
		params.Set("iss", a.iss)
	}
	noStore(a.w)
	if !a.formPost {
		a.w.Header().Set("Location", withParams(a.redirectURI, params))
		a.w.WriteHeader(http.StatusFound)
		return
	}
	page := formPostData{Action: a.redirectURI}
	for _, k := range slices.Sorted(maps.Keys(params)) {
		page.Fields = append(page.Fields, formField{k, params.Get(k)})
	}
	a.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = formPostPage.Execute(a.w, page)
}

type formField struct{ Name, Value string }

type formPostData struct {
	Action string
	Fields []formField
}

// formPostPage is the OAuth 2.0 Form Post Response Mode page. ParseFormPost
// reads it back.
var formPostPage = template.Must(template.New("form_post").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Signing in</title></head>
<body onload="document.forms[0].submit()">
<form method="post" action="{{.Action}}">
{{range .Fields}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<noscript><button type="submit">Continue</button></noscript>
</form>
</body></html>
`))

var (
	formAction = regexp.MustCompile(`<form method="post" action="([^"]*)">`)
	formInput  = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)
)

// ParseFormPost reads a response_mode=form_post page written by this
// provider, returning where the browser would POST and the fields it would
// send, so tests can play the browser's part.
func ParseFormPost(page string) (action string, fields url.Values, ok bool) {
	a := formAction.FindStringSubmatch(page)
	if a == nil {
		return "", nil, false
	}
	fields = url.Values{}
	for _, in := range formInput.FindAllStringSubmatch(page, -1) {
		fields.Add(html.UnescapeString(in[1]), html.UnescapeString(in[2]))
	}
	return html.UnescapeString(a[1]), fields, true
}
