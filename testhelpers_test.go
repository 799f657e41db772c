package pkceauth

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-pkce/caddy-pkce/internal/testop"
)

// The integration tests run Caddy in this test process (caddytest starts
// it once) and load one config at a time, so they must not run in
// parallel with each other.

// clockOffset shifts the module's clock (now, in session.go) for tests that
// need time to pass. It is read atomically because Caddy's goroutines read
// the clock while a test moves it.
var clockOffset atomic.Int64

func init() {
	now = func() time.Time { return time.Now().Add(time.Duration(clockOffset.Load())) }
}

// testClock is the module's clock, for a test provider that must agree
// with it when a test moves time.
func testClock() time.Time { return now() }

// advanceClock moves the module's clock forward (or back, for negative d)
// until the test ends.
func advanceClock(t testing.TB, d time.Duration) {
	t.Helper()
	clockOffset.Add(int64(d))
	t.Cleanup(func() { clockOffset.Store(0) })
}

// Session secrets for configs that set session_keys.
const (
	testKeyA = "test-session-key-A-0123456789abcdef0123456789"
	testKeyB = "test-session-key-B-0123456789abcdef0123456789"
	testKeyC = "test-session-key-C-0123456789abcdef0123456789"
)

// echoBody is what the protected upstream answers: the identity
// placeholders and the request headers it received, one per line.
var echoBody = strings.Join([]string{
	"id={http.auth.user.id}",
	"email={http.auth.user.email}",
	"email_verified={http.auth.user.email_verified}",
	"name={http.auth.user.name}",
	"username={http.auth.user.preferred_username}",
	"groups={http.auth.user.groups}",
	"claim_sub={http.auth.user.claims.sub}",
	"claim_groups={http.auth.user.claims.groups}",
	"claim_department={http.auth.user.claims.department}",
	"x_user={http.request.header.X-User}",
	"x_groups={http.request.header.X-Groups}",
	"x_missing={http.request.header.X-Missing}",
	"cookie={http.request.header.Cookie}",
	"uri={http.request.uri}",
}, "\n")

// siteOptions describe one Caddy config around one pkce_auth handler.
type siteOptions struct {
	// auth is merged over the defaults (issuer and client_id of the test
	// provider, cookie_secure never, session_keys [testKeyA]); a nil value
	// removes a default.
	auth map[string]any
	// tls serves HTTPS with a self-signed certificate for localhost.
	tls bool
	// handleErrors adds an errors route answering
	// "handled <status>" with the error's status.
	handleErrors bool
	// storage is Caddy's storage directory. Default: a new temp dir.
	storage string
	// trustedProxies trusts 127.0.0.1 as a proxy (X-Forwarded-*).
	trustedProxies bool
	// next replaces the echo upstream as the handlers after pkce_auth.
	next []any
	// accessLog turns on the server's access log (into the log file).
	accessLog bool
	// apps are more Caddy apps beside http (and tls).
	apps map[string]any
}

// site is a running Caddy config in front of the echo upstream.
type site struct {
	t       *testing.T
	op      *testop.Provider
	opts    siteOptions
	port    int
	base    string // scheme://host:port
	logFile string
	logSeen int
	certs   *testCert
	loads   int // config generation: an identical config would not reload
}

var (
	adminPortOnce sync.Once
	adminPort     int
)

func pickFreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startSite loads a Caddy config serving pkce_auth and the echo upstream
// on a free port of 127.0.0.1.
func startSite(t *testing.T, op *testop.Provider, opts siteOptions) *site {
	t.Helper()
	s := &site{t: t, op: op, port: pickFreePort(t), logFile: filepath.Join(t.TempDir(), "caddy.log")}
	if opts.tls {
		s.certs = newTestCert(t)
	}
	s.reload(opts)
	s.unloadAtCleanup()
	return s
}

// unloadAtCleanup shows the end of Caddy's log when the test failed, and
// stops the servers (and the provider's discovery retries) before the
// test's provider and temp dirs go away.
func (s *site) unloadAtCleanup() {
	t := s.t
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(s.logFile); err == nil {
				t.Logf("Caddy log:\n%s", tail(string(b), 8000))
			}
		}
		if msg := postCaddyConfig(t, map[string]any{}); msg != "" {
			t.Errorf("unloading the config: %s", msg)
		}
	})
}

// reload loads a new config on the same port: a new handler instance is
// provisioned, as on a config reload.
func (s *site) reload(opts siteOptions) {
	s.t.Helper()
	if opts.storage == "" {
		if s.opts.storage != "" {
			opts.storage = s.opts.storage
		} else {
			opts.storage = s.t.TempDir()
		}
	}
	s.opts = opts
	host, scheme := "127.0.0.1", "http"
	if opts.tls {
		host, scheme = "localhost", "https"
	}
	s.base = fmt.Sprintf("%s://%s:%d", scheme, host, s.port)
	s.loads++
	loadCaddyJSON(s.t, s.config())
	if opts.tls {
		s.waitTLS()
	}
}

func (s *site) authConfig() map[string]any {
	auth := map[string]any{
		"handler":       "pkce_auth",
		"issuer":        s.op.Issuer(),
		"client_id":     s.op.ClientID(),
		"cookie_secure": "never",
		"session_keys":  []string{testKeyA},
	}
	if s.opts.tls {
		delete(auth, "cookie_secure")
	}
	for k, v := range s.opts.auth {
		if v == nil {
			delete(auth, k)
		} else {
			auth[k] = v
		}
	}
	return auth
}

// nextHandlers are the handlers after pkce_auth: the echo upstream unless
// the test set its own.
func (s *site) nextHandlers() []any {
	if s.opts.next != nil {
		return s.opts.next
	}
	return []any{map[string]any{
		"handler":     "static_response",
		"status_code": 200,
		"headers":     map[string][]string{"Content-Type": {"text/plain; charset=utf-8"}},
		"body":        echoBody,
	}}
}

func (s *site) config() map[string]any {
	server := map[string]any{
		"listen": []string{fmt.Sprintf("127.0.0.1:%d", s.port)},
		"routes": []any{map[string]any{
			"@id":    fmt.Sprintf("pkce-route-%d", s.loads),
			"handle": append([]any{s.authConfig()}, s.nextHandlers()...),
		}},
		"automatic_https": map[string]any{"disable": true},
		"protocols":       []string{"h1", "h2"},
	}
	if s.opts.accessLog {
		server["logs"] = map[string]any{}
	}
	if s.opts.trustedProxies {
		server["trusted_proxies"] = map[string]any{"source": "static", "ranges": []string{"127.0.0.1/32"}}
	}
	if s.opts.handleErrors {
		server["errors"] = map[string]any{"routes": []any{map[string]any{
			"handle": []any{map[string]any{
				"handler":     "static_response",
				"status_code": "{http.error.status_code}",
				"body":        "handled {http.error.status_code}",
			}},
		}}}
	}
	apps := map[string]any{
		"http": map[string]any{
			"grace_period": "1ms",
			"servers":      map[string]any{"srv0": server},
		},
	}
	maps.Copy(apps, s.opts.apps)
	if s.opts.tls {
		server["tls_connection_policies"] = []any{map[string]any{}}
		apps["tls"] = map[string]any{
			"certificates": map[string]any{"load_pem": []any{map[string]any{
				"certificate": s.certs.certPEM, "key": s.certs.keyPEM,
			}}},
		}
	}
	return map[string]any{
		"storage": map[string]any{"module": "file_system", "root": s.opts.storage},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{
			"writer":  map[string]any{"output": "file", "filename": s.logFile, "roll": false},
			"encoder": map[string]any{"format": "json"},
			"level":   "DEBUG",
		}}},
		"apps": apps,
	}
}

// loadCaddyJSON loads cfg into the in-process Caddy through caddytest. Its
// admin endpoint listens on a free port rather than caddytest's fixed 2999,
// so test binaries of other packages running at the same time cannot
// interfere.
func loadCaddyJSON(t *testing.T, cfg map[string]any) {
	t.Helper()
	adminPortOnce.Do(func() { adminPort = pickFreePort(t) })
	cfg = maps.Clone(cfg)
	cfg["admin"] = map[string]any{
		"listen": fmt.Sprintf("localhost:%d", adminPort),
		"config": map[string]any{"persist": false},
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{
		AdminPort:          adminPort,
		LoadRequestTimeout: 10 * time.Second,
		TestRequestTimeout: 10 * time.Second,
	})
	tester.InitServer(string(raw), "json")
	if t.Failed() {
		t.FailNow()
	}
}

// loadCaddyError loads cfg and returns the error Caddy answers, or "" when
// it loaded.
func loadCaddyError(t *testing.T, cfg map[string]any) string {
	t.Helper()
	// caddytest starts Caddy on its first use.
	loadCaddyJSON(t, map[string]any{})
	return postCaddyConfig(t, cfg)
}

// postCaddyConfig loads cfg through the admin endpoint and returns the
// error Caddy answers, or "" when it loaded.
func postCaddyConfig(t testing.TB, cfg map[string]any) string {
	t.Helper()
	cfg = maps.Clone(cfg)
	cfg["admin"] = map[string]any{
		"listen": fmt.Sprintf("localhost:%d", adminPort),
		"config": map[string]any{"persist": false},
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(fmt.Sprintf("http://localhost:%d/load", adminPort), "application/json", strings.NewReader(string(raw)))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return ""
	}
	return string(body)
}

// waitTLS waits until the server answers TLS handshakes with the test
// certificate.
func (s *site) waitTLS() {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), &tls.Config{ServerName: "localhost", RootCAs: s.certs.pool})
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("TLS server not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logEntry is one line of Caddy's JSON log.
type logEntry map[string]any

func (e logEntry) str(k string) string { s, _ := e[k].(string); return s }

// newLogs returns the module's log entries written since the last call.
func (s *site) newLogs() []logEntry {
	s.t.Helper()
	b, err := os.ReadFile(s.logFile)
	if err != nil && !os.IsNotExist(err) {
		s.t.Fatal(err)
	}
	if s.logSeen > len(b) {
		s.logSeen = 0
	}
	chunk := b[s.logSeen:]
	s.logSeen = len(b)
	var out []logEntry
	sc := bufio.NewScanner(strings.NewReader(string(chunk)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e logEntry
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.str("logger") == "http.handlers.pkce_auth" {
			out = append(out, e)
		}
	}
	return out
}

// expectFailureReason checks that exactly one login failed since the last
// look at the log, for a reason containing want: the test then knows
// which check refused it, not only that something did.
func (s *site) expectFailureReason(t *testing.T, want string) {
	t.Helper()
	var reasons []string
	for _, e := range s.newLogs() {
		if e.str("msg") == "login failed" {
			reasons = append(reasons, e.str("reason"))
		}
	}
	if len(reasons) != 1 || !strings.Contains(reasons[0], want) {
		t.Errorf("logged login failures %q, want exactly one with a reason containing %q", reasons, want)
	}
}

// expectNoFailure checks that no login failed since the last look.
func (s *site) expectNoFailure(t *testing.T) {
	t.Helper()
	for _, e := range s.newLogs() {
		if e.str("msg") == "login failed" {
			t.Errorf("unexpected login failure: %s", e.str("reason"))
		}
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// testCert is a self-signed certificate for localhost and 127.0.0.1.
type testCert struct {
	certPEM, keyPEM string
	pool            *x509.CertPool
}

func newTestCert(t testing.TB) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCert{
		certPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		keyPEM:  string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})),
		pool:    pool,
	}
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects, so that every hop of a flow is asserted.
type browser struct {
	t      *testing.T
	jar    *cookiejar.Jar
	client *http.Client
}

func newBrowser(t *testing.T, s *site) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	transport := &http.Transport{
		// localhost is 127.0.0.1 here; do not try ::1 first.
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if host, port, err := net.SplitHostPort(addr); err == nil && host == "localhost" {
				addr = net.JoinHostPort("127.0.0.1", port)
			}
			return dialer.DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{},
	}
	if s != nil && s.certs != nil {
		transport.TLSClientConfig.RootCAs = s.certs.pool
	}
	t.Cleanup(transport.CloseIdleConnections)
	return &browser{t: t, jar: jar, client: &http.Client{
		Jar:           jar,
		Transport:     transport,
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// reply is a response with its body read.
type reply struct {
	Status  int
	Header  http.Header
	Body    string
	Cookies []*http.Cookie // Set-Cookie of this response
	URL     string         // the request URL
}

// Location is the Location header.
func (r *reply) Location() string { return r.Header.Get("Location") }

// SetCookie returns the Set-Cookie of this response for name, or nil.
func (r *reply) SetCookie(name string) *http.Cookie {
	for _, c := range r.Cookies {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Fields parses the echo upstream's body.
func (r *reply) Fields() map[string]string {
	out := map[string]string{}
	for line := range strings.SplitSeq(r.Body, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			out[k] = v
		}
	}
	return out
}

func (r *reply) String() string {
	return fmt.Sprintf("%s → %d, headers %v, body %q", r.URL, r.Status, r.Header, tail(r.Body, 600))
}

// Request header sets of the kinds of request the module tells apart.
var (
	navigationHeaders = http.Header{
		"Accept":          {"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
		"Sec-Fetch-Mode":  {"navigate"},
		"Sec-Fetch-Dest":  {"document"},
		"Sec-Fetch-Site":  {"none"},
		"Sec-Fetch-User":  {"?1"},
		"Accept-Language": {"en"},
	}
	fetchHeaders = http.Header{
		"Accept":         {"application/json"},
		"Sec-Fetch-Mode": {"cors"},
		"Sec-Fetch-Dest": {"empty"},
		"Sec-Fetch-Site": {"same-origin"},
	}
)

// withHeaders returns base with extra added (extra wins).
func withHeaders(base http.Header, extra ...string) http.Header {
	h := base.Clone()
	for i := 0; i+1 < len(extra); i += 2 {
		h.Set(extra[i], extra[i+1])
	}
	return h
}

// do sends a request and reads the whole response.
func (b *browser) do(method, target string, header http.Header, body io.Reader) *reply {
	b.t.Helper()
	var payload []byte
	if body != nil {
		var err error
		if payload, err = io.ReadAll(body); err != nil {
			b.t.Fatal(err)
		}
	}
	var resp *http.Response
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequest(method, target, bytes.NewReader(payload))
		if err != nil {
			b.t.Fatal(err)
		}
		for k, vs := range header {
			req.Header[k] = append([]string(nil), vs...)
		}
		resp, err = b.client.Do(req)
		if err == nil {
			break
		}
		// Right after a config reload the old server, still shutting
		// down, can accept a connection and close it unread (see the
		// comments in caddyhttp.App.Stop); the request never reached a
		// handler, so it is sent again.
		if attempt < 3 && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		b.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return &reply{Status: resp.StatusCode, Header: resp.Header, Body: string(data), Cookies: resp.Cookies(), URL: target}
}

// raw sends a request with the request line exactly as given (Go's client
// would normalise paths such as "//host"), with the jar's cookies, and puts
// the response's cookies into the jar.
func (b *browser) raw(s *site, requestLine string, header http.Header) *reply {
	b.t.Helper()
	if s.opts.tls {
		b.t.Fatal("raw requests are plain HTTP only")
	}
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), 5*time.Second)
	if err != nil {
		b.t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	u, _ := url.Parse(s.base + "/")
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s\r\nHost: %s\r\nConnection: close\r\n", requestLine, u.Host)
	for k, vs := range header {
		for _, v := range vs {
			fmt.Fprintf(&sb, "%s: %s\r\n", k, v)
		}
	}
	var cookies []string
	for _, c := range b.jar.Cookies(u) {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	if len(cookies) > 0 {
		fmt.Fprintf(&sb, "Cookie: %s\r\n", strings.Join(cookies, "; "))
	}
	sb.WriteString("\r\n")
	if _, err := io.WriteString(conn, sb.String()); err != nil {
		b.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	b.jar.SetCookies(u, resp.Cookies())
	return &reply{Status: resp.StatusCode, Header: resp.Header, Body: string(data), Cookies: resp.Cookies(), URL: requestLine}
}

// navigate is a top-level browser navigation (a typed URL or a link).
func (b *browser) navigate(target string, extra ...string) *reply {
	b.t.Helper()
	return b.do(http.MethodGet, target, withHeaders(navigationHeaders, extra...), nil)
}

// fetch is a script's fetch() of JSON.
func (b *browser) fetch(target string, extra ...string) *reply {
	b.t.Helper()
	return b.do(http.MethodGet, target, withHeaders(fetchHeaders, extra...), nil)
}

// get is a plain GET, as a browser follows a redirect to the provider.
func (b *browser) get(target string) *reply {
	b.t.Helper()
	return b.do(http.MethodGet, target, navigationHeaders, nil)
}

// cookie returns the jar's cookie name for the site, or nil.
func (b *browser) cookie(s *site, name string) *http.Cookie {
	u, _ := url.Parse(s.base + "/")
	for _, c := range b.jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// cookieNames lists the names of the jar's cookies for the site.
func (b *browser) cookieNames(s *site) []string {
	u, _ := url.Parse(s.base + "/")
	var names []string
	for _, c := range b.jar.Cookies(u) {
		names = append(names, c.Name)
	}
	return names
}

// setCookie puts a cookie into the jar for the site.
func (b *browser) setCookie(s *site, name, value string) {
	u, _ := url.Parse(s.base + "/")
	b.jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

// deleteCookie removes a cookie from the jar for the site.
func (b *browser) deleteCookie(s *site, name string) {
	u, _ := url.Parse(s.base + "/")
	b.jar.SetCookies(u, []*http.Cookie{{Name: name, Path: "/", MaxAge: -1}})
}

// sessionName is the session cookie's name on this site.
func (s *site) sessionName() string {
	if s.opts.tls {
		return "__Host-pkce_session"
	}
	return "pkce_session"
}

func (s *site) txnName(state string) string {
	name := "pkce_txn_" + state[:txnIDLength]
	if s.opts.tls {
		return "__Host-" + name
	}
	return name
}

// loginStart is the first hop of a login: the navigation and the
// authorization request it redirected to.
type loginStart struct {
	reply  *reply
	params url.Values // of the authorization request
	state  string
}

// startLogin navigates to path without a session and checks the redirect
// to the provider.
func (s *site) startLogin(t *testing.T, b *browser, path string) loginStart {
	t.Helper()
	r := b.navigate(s.base + path)
	if r.Status != http.StatusFound {
		t.Fatalf("navigation without session: %s; want 302", r)
	}
	loc, err := url.Parse(r.Location())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := loc.Scheme+"://"+loc.Host+loc.Path, s.op.Issuer()+testop.AuthorizePath; got != want {
		t.Fatalf("login redirect to %q, want the authorization endpoint %q", got, want)
	}
	params := loc.Query()
	return loginStart{reply: r, params: params, state: params.Get("state")}
}

// authorize follows the redirect to the provider and returns its redirect
// back to the callback (the callback URL).
func (s *site) authorize(t *testing.T, b *browser, ls loginStart) string {
	t.Helper()
	r := b.get(ls.reply.Location())
	if r.Status != http.StatusFound {
		t.Fatalf("authorization request: %s; want 302 back to the callback", r)
	}
	if !strings.HasPrefix(r.Location(), s.base+"/oauth2/callback?") {
		t.Fatalf("provider redirected to %q, want %s/oauth2/callback", r.Location(), s.base)
	}
	return r.Location()
}

// callback delivers the provider's answer as a browser does: a top-level
// navigation started by the provider's site.
func (s *site) callback(b *browser, callbackURL string) *reply {
	b.t.Helper()
	return b.navigate(callbackURL, "Sec-Fetch-Site", "cross-site")
}

// login runs a whole login to path and checks it succeeded.
func (s *site) login(t *testing.T, b *browser, path string) *reply {
	t.Helper()
	ls := s.startLogin(t, b, path)
	r := s.callback(b, s.authorize(t, b, ls))
	if r.Status != http.StatusSeeOther {
		t.Fatalf("callback: %s; want 303", r)
	}
	return r
}

// expectNoSessionSet checks that a response set no session cookie and that
// the browser holds none.
func (s *site) expectNoSessionSet(t *testing.T, b *browser, r *reply) {
	t.Helper()
	for _, c := range r.Cookies {
		if strings.HasPrefix(c.Name, s.sessionName()) && c.MaxAge >= 0 {
			t.Errorf("response set session cookie %s", c.Name)
		}
	}
	if c := b.cookie(s, s.sessionName()); c != nil {
		t.Errorf("browser holds a session cookie after %s", r.URL)
	}
}

// expectTxnConsumed checks that the response expired the transaction cookie
// of state and that the browser no longer has it.
func (s *site) expectTxnConsumed(t *testing.T, b *browser, r *reply, state string) {
	t.Helper()
	name := s.txnName(state)
	c := r.SetCookie(name)
	if c == nil || c.MaxAge >= 0 || c.Value != "" {
		t.Errorf("transaction cookie %s not expired by the response (Set-Cookie %v)", name, c)
	}
	if b.cookie(s, name) != nil {
		t.Errorf("browser still holds transaction cookie %s", name)
	}
}

// expectNoSetCookie checks that a response set no cookie at all.
func expectNoSetCookie(t *testing.T, r *reply) {
	t.Helper()
	if v := r.Header.Values("Set-Cookie"); len(v) > 0 {
		t.Errorf("%s: unexpected Set-Cookie %q", r.URL, v)
	}
}

func expectStatus(t *testing.T, r *reply, want int) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("%s; want status %d", r, want)
	}
}

// caddyfileGlobals is the global options block of the tests' Caddyfiles:
// this package's admin endpoint, no persisted config, no automatic HTTPS,
// Caddy's storage in storage, logs discarded; extra is more global options.
func caddyfileGlobals(t *testing.T, storage, extra string) string {
	t.Helper()
	adminPortOnce.Do(func() { adminPort = pickFreePort(t) })
	return fmt.Sprintf(`{
	admin localhost:%d
	persist_config off
	auto_https off
	grace_period 1ms
	storage file_system %s
	log {
		output discard
	}
%s}
`, adminPort, storage, extra)
}
