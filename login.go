package pkceauth

import (
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

// transaction is one pending login, sealed into its own cookie (named after
// its state) so that several tabs can log in at once.
type transaction struct {
	State       string `json:"s"`
	Nonce       string `json:"n"`
	Verifier    string `json:"v"`
	ReturnTo    string `json:"r"`
	RedirectURI string `json:"u"`
	Created     int64  `json:"t"`

	// What the handler that started the login requires (access.go),
	// checked at the callback whichever handler serves it: acr_values,
	// max_age in seconds, and claims to keep for its rules.
	ACR    []string `json:"a,omitempty"`
	MaxAge int64    `json:"m,omitempty"`
	Claims []string `json:"c,omitempty"`
}

// startLogin creates a transaction and redirects the browser to the
// provider's authorization endpoint. route is the policy of the route that
// asks (nil for none): its step-up requirements and rule claims travel in
// the transaction.
func (p *PKCEAuth) startLogin(w http.ResponseWriter, r *http.Request, jar *cookieJar, route *accessPolicy) error {
	return p.startLoginTo(w, r, jar, r.URL.RequestURI(), route)
}

// startLoginTo is startLogin returning to returnTo (checked here) instead
// of the request's own URI.
func (p *PKCEAuth) startLoginTo(w http.ResponseWriter, r *http.Request, jar *cookieJar, returnTo string, route *accessPolicy) error {
	st, err := p.provider.get(r.Context())
	if err != nil {
		return p.providerError(w, r, err)
	}
	txn := transaction{
		State:       randomToken(),
		Nonce:       randomToken(),
		Verifier:    oauth2.GenerateVerifier(),
		ReturnTo:    returnPathOrRoot(returnTo),
		RedirectURI: p.redirectURI(r),
		Created:     now().Unix(),
	}
	route.require(&txn)
	plain, err := json.Marshal(txn)
	if err != nil {
		return err
	}
	name := jar.txnName(txn.State)
	formPost := p.ResponseMode == "form_post"
	if formPost && !strings.HasPrefix(p.origin(r), "https:") && !isLoopbackHost(r.Host) {
		// The callback's cross-site POST carries only a SameSite=None
		// cookie, which browsers accept only when Secure, and Secure
		// cookies only from https (or localhost). Starting a login that
		// must fail at the callback would only puzzle the user.
		p.logger.Error("response_mode form_post needs HTTPS: this request came over plain HTTP (behind a TLS-terminating proxy, list it in trusted_proxies or set cookie_secure always)",
			zap.String("host", r.Host))
		return p.fail(w, r, http.StatusInternalServerError, "Sign-in misconfigured",
			"This site's sign-in needs HTTPS. Tell the site's administrator.")
	}
	p.evictTransactions(w, r, jar, formPost)
	http.SetCookie(w, jar.txnCookie(name, p.txnKeys.Seal(name, plain), int(time.Duration(p.LoginTimeout)/time.Second), formPost))

	cfg := st.oauth2
	cfg.RedirectURL = txn.RedirectURI
	opts := []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("nonce", txn.Nonce)}
	if st.pkceMethod == "plain" {
		opts = append(opts,
			oauth2.SetAuthURLParam("code_challenge_method", "plain"),
			oauth2.SetAuthURLParam("code_challenge", txn.Verifier))
	} else {
		opts = append(opts, oauth2.S256ChallengeOption(txn.Verifier))
	}
	if formPost {
		opts = append(opts, oauth2.SetAuthURLParam("response_mode", "form_post"))
	}
	for k, v := range p.AuthParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	opts = append(opts, txn.stepUpParams()...)
	query := r.URL.Query()
	for _, k := range p.ForwardAuthParams {
		if v := query.Get(k); v != "" && len(v) <= 256 {
			opts = append(opts, oauth2.SetAuthURLParam(k, v))
		}
	}

	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", cfg.AuthCodeURL(txn.State, opts...))
	w.WriteHeader(http.StatusFound)
	p.metrics.loginStarted()
	if c := p.logger.Check(zap.InfoLevel, "login started"); c != nil {
		c.Write(zap.String("return_to", txn.ReturnTo), zap.String("remote_ip", remoteIP(r)))
	}
	return nil
}

// evictTransactions keeps at most MaxPendingLogins-1 transaction cookies
// before a new one is added, expiring the oldest first. Cookies that do not
// open are expired too: they are stale or forged.
func (p *PKCEAuth) evictTransactions(w http.ResponseWriter, r *http.Request, jar *cookieJar, formPost bool) {
	prefix := jar.txn
	type pending struct {
		name    string
		created int64
	}
	var live []pending
	for _, c := range r.Cookies() {
		if !strings.HasPrefix(c.Name, prefix) {
			continue
		}
		txn, ok := p.openTransaction(c.Name, c.Value)
		if !ok {
			http.SetCookie(w, jar.txnCookie(c.Name, "", -1, formPost))
			continue
		}
		live = append(live, pending{c.Name, txn.Created})
	}
	if excess := len(live) - (p.MaxPendingLogins - 1); excess > 0 {
		sort.Slice(live, func(i, j int) bool { return live[i].created < live[j].created })
		for _, t := range live[:excess] {
			http.SetCookie(w, jar.txnCookie(t.name, "", -1, formPost))
		}
	}
}

// openTransaction opens a transaction cookie and checks that it is unexpired
// and really belongs to that cookie name.
func (p *PKCEAuth) openTransaction(name, value string) (*transaction, bool) {
	plain, err := p.txnKeys.Open(name, value)
	if err != nil {
		return nil, false
	}
	var txn transaction
	if json.Unmarshal(plain, &txn) != nil || len(txn.State) < txnIDLength {
		return nil, false
	}
	// A start slightly in the future is another instance's clock running
	// ahead of this one's (no sticky sessions): allow clock_skew for it.
	age := now().Unix() - txn.Created
	if age < -int64(time.Duration(p.ClockSkew)/time.Second) || age > int64(time.Duration(p.LoginTimeout)/time.Second) {
		return nil, false
	}
	return &txn, true
}

// redirectURI is the configured redirect_url, or this request's origin
// followed by the callback path.
func (p *PKCEAuth) redirectURI(r *http.Request) string {
	if p.RedirectURL != "" {
		return p.RedirectURL
	}
	return p.origin(r) + p.CallbackPath
}

// origin is the origin the browser used.
func (p *PKCEAuth) origin(r *http.Request) string {
	return (&url.URL{Scheme: p.scheme(r), Host: r.Host}).String()
}

// scheme is the scheme of the origin the browser used. cookie_secure
// always says the browser talks HTTPS (Secure cookies travel over nothing
// else), even when a TLS-terminating proxy hands the request on over plain
// HTTP.
func (p *PKCEAuth) scheme(r *http.Request) string {
	if p.CookieSecure == "always" && r.TLS == nil {
		return "https"
	}
	return requestScheme(r)
}

// requestOrigin is the origin the browser used, as requestScheme tells it.
func requestOrigin(r *http.Request) string {
	return (&url.URL{Scheme: requestScheme(r), Host: r.Host}).String()
}

// requestScheme is the scheme the browser used. Behind a TLS-terminating
// proxy the request arrives over plain HTTP; the scheme is then taken from
// X-Forwarded-Proto, but only when Caddy's trusted_proxies lists the
// proxy (anyone else could send the header).
func requestScheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		if values := r.Header.Values("X-Forwarded-Proto"); len(values) > 0 {
			// The last value is the one the nearest (trusted) proxy added.
			list := strings.Split(values[len(values)-1], ",")
			if proto := strings.ToLower(strings.TrimSpace(list[len(list)-1])); proto == "https" {
				return "https"
			}
		}
	}
	return "http"
}

// randomToken returns 256 random bits, base64url-encoded (43 characters).
func randomToken() string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(32))
}

// isLoopbackHost reports whether host (with or without port) is localhost
// or a loopback address, where browsers treat plain http as secure.
func isLoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
