package pkceauth

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// jarFor builds the handler's cookie jar for a request, as Provision and
// ServeHTTP do.
func jarFor(t *testing.T, p *PKCEAuth, r *http.Request) *cookieJar {
	t.Helper()
	if p.Issuer == "" {
		p.Issuer, p.ClientID = "https://idp.example", "app"
	}
	p.setDefaults()
	p.buildJars()
	return p.cookies(r)
}

func TestCookieAttributes(t *testing.T) {
	plainReq := httptest.NewRequest(http.MethodGet, "http://app.example/", nil)
	tlsReq := httptest.NewRequest(http.MethodGet, "https://app.example/", nil)
	tlsReq.TLS = &tls.ConnectionState{}

	cases := []struct {
		name       string
		cfg        PKCEAuth
		req        *http.Request
		session    string // session cookie name
		txnPrefix  string
		secure     bool
		domain     string
		path       string
		sameSite   http.SameSite
		formSecure bool // the form_post transaction cookie is Secure (always)
	}{
		{"auto over TLS", PKCEAuth{}, tlsReq, "__Host-pkce_session", "__Host-pkce_txn_", true, "", "/", http.SameSiteLaxMode, true},
		{"auto over plain HTTP", PKCEAuth{}, plainReq, "pkce_session", "pkce_txn_", false, "", "/", http.SameSiteLaxMode, true},
		{"always over plain HTTP (TLS proxy)", PKCEAuth{CookieSecure: "always"}, plainReq, "__Host-pkce_session", "__Host-pkce_txn_", true, "", "/", http.SameSiteLaxMode, true},
		{"never over TLS", PKCEAuth{CookieSecure: "never"}, tlsReq, "pkce_session", "pkce_txn_", false, "", "/", http.SameSiteLaxMode, true},
		{"domain drops __Host-", PKCEAuth{CookieDomain: "example.com"}, tlsReq, "__Secure-pkce_session", "__Host-pkce_txn_", true, "example.com", "/", http.SameSiteLaxMode, true},
		{"path drops __Host-", PKCEAuth{CookiePath: "/app"}, tlsReq, "__Secure-pkce_session", "__Host-pkce_txn_", true, "", "/app", http.SameSiteLaxMode, true},
		{"custom name, strict", PKCEAuth{CookieName: "sso", CookieSameSite: "Strict"}, tlsReq, "__Host-sso", "__Host-pkce_txn_", true, "", "/", http.SameSiteStrictMode, true},
		{"SameSite none", PKCEAuth{CookieSameSite: "none"}, tlsReq, "__Host-pkce_session", "__Host-pkce_txn_", true, "", "/", http.SameSiteNoneMode, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.cfg
			jar := jarFor(t, &p, c.req)
			if jar.name != c.session {
				t.Errorf("session cookie name %q, want %q", jar.name, c.session)
			}
			sc := jar.sessionCookie(jar.name, "v", 60)
			if sc.Secure != c.secure || !sc.HttpOnly || sc.SameSite != c.sameSite || sc.Path != c.path || sc.Domain != c.domain || sc.MaxAge != 60 {
				t.Errorf("session cookie %+v: want Secure=%v HttpOnly SameSite=%v Path=%q Domain=%q", sc, c.secure, c.sameSite, c.path, c.domain)
			}
			if chunk := jar.chunkName(2); chunk != c.session+"_2" {
				t.Errorf("chunk name %q", chunk)
			}
			state := randomToken()
			name := jar.txnName(state)
			if want := c.txnPrefix + state[:txnIDLength]; name != want {
				t.Errorf("transaction cookie name %q, want %q", name, want)
			}
			tc := jar.txnCookie(name, "v", 600, false)
			if tc.Secure != c.secure || !tc.HttpOnly || tc.SameSite != http.SameSiteLaxMode || tc.Path != "/" || tc.Domain != "" || tc.MaxAge != 600 {
				t.Errorf("transaction cookie %+v: want Secure=%v HttpOnly SameSite=Lax Path=/ no Domain", tc, c.secure)
			}
			fc := jar.txnCookie(name, "v", 600, true)
			if !fc.Secure || fc.SameSite != http.SameSiteNoneMode || !fc.HttpOnly || fc.Path != "/" {
				t.Errorf("form_post transaction cookie %+v: want Secure SameSite=None HttpOnly Path=/", fc)
			}
			// The serialised form is what browsers see; __Host- cookies
			// must be Secure, Path=/ and without Domain or browsers drop them.
			line := sc.String()
			if strings.HasPrefix(sc.Name, "__Host-") && (!strings.Contains(line, "; Secure") || strings.Contains(line, "Domain=") || !strings.Contains(line, "Path=/;")) {
				t.Errorf("__Host- cookie %q breaks the prefix rules", line)
			}
			if strings.HasPrefix(sc.Name, "__Secure-") && !strings.Contains(line, "; Secure") {
				t.Errorf("__Secure- cookie %q is not Secure", line)
			}
		})
	}
}

func TestCookieValue(t *testing.T) {
	cases := []struct {
		name   string
		header []string
		cookie string
		want   string
	}{
		{"only", []string{"pkce_session=abc"}, "pkce_session", "abc"},
		{"among others", []string{"a=1; pkce_session=abc; b=2"}, "pkce_session", "abc"},
		{"no space", []string{"a=1;pkce_session=abc;b=2"}, "pkce_session", "abc"},
		{"several headers", []string{"a=1", "pkce_session=abc"}, "pkce_session", "abc"},
		{"first wins", []string{"pkce_session=one; pkce_session=two"}, "pkce_session", "one"},
		{"quoted", []string{`pkce_session="abc"`}, "pkce_session", "abc"},
		{"prefix of another name", []string{"pkce_session_1=chunk; xpkce_session=x"}, "pkce_session", ""},
		{"chunk by name", []string{"pkce_session=a; pkce_session_1=b"}, "pkce_session_1", "b"},
		{"value with =", []string{"pkce_session=a=b"}, "pkce_session", "a=b"},
		{"empty value", []string{"pkce_session=; a=1"}, "pkce_session", ""},
		{"name without value", []string{"pkce_session; a=1"}, "pkce_session", ""},
		{"absent", []string{"a=1"}, "pkce_session", ""},
		{"no header", nil, "pkce_session", ""},
		{"trailing semicolon", []string{"pkce_session=abc;"}, "pkce_session", "abc"},
		{"spaces around value", []string{"pkce_session= abc ; a=1"}, "pkce_session", "abc"},
		{"case matters", []string{"PKCE_SESSION=abc"}, "pkce_session", ""},
		{"prefixed name", []string{"__Host-pkce_session=abc"}, "pkce_session", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if c.header != nil {
				r.Header["Cookie"] = c.header
			}
			if got := cookieValue(r, c.cookie); got != c.want {
				t.Errorf("cookieValue(%q, %q) = %q, want %q", c.header, c.cookie, got, c.want)
			}
		})
	}
}

func TestStripCookies(t *testing.T) {
	cases := []struct {
		name   string
		secure bool
		header []string
		want   []string // nil: no Cookie header left
	}{
		{"session only", false, []string{"pkce_session=abc"}, nil},
		{"keeps others", false, []string{"a=1; pkce_session=abc; b=2"}, []string{"a=1; b=2"}},
		{"chunks and transactions", false, []string{"pkce_session=2.x; pkce_session_1=y; pkce_txn_ABCDEFGHIJKLMNOP=z; theme=dark"}, []string{"theme=dark"}},
		{"several headers merged", false, []string{"a=1; pkce_session=x", "b=2"}, []string{"a=1; b=2"}},
		{"nothing of ours untouched", false, []string{"a=1;b=2", "c=3"}, []string{"a=1;b=2", "c=3"}},
		{"similar names kept", false, []string{"pkce_sessionX=1; my_pkce_session=2; pkce_txn=3"}, []string{"pkce_sessionX=1; my_pkce_session=2; pkce_txn=3"}},
		{"secure names", true, []string{"__Host-pkce_session=a; __Host-pkce_session_1=b; __Host-pkce_txn_ABCDEFGHIJKLMNOP=c; pkce_session=plain"}, []string{"pkce_session=plain"}},
		{"empty parts dropped", false, []string{"a=1; ; pkce_session=x;"}, []string{"a=1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mode := "never"
			if c.secure {
				mode = "always"
			}
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			jar := jarFor(t, &PKCEAuth{CookieSecure: mode}, r)
			r.Header["Cookie"] = slices.Clone(c.header)
			jar.stripCookies(r)
			if got := r.Header["Cookie"]; !slices.Equal(got, c.want) {
				t.Errorf("Cookie after strip %q, want %q", got, c.want)
			}
		})
	}
}

// TestSessionChunks: setSession and readSession round-trip values of every
// size up to the limit, split at maxChunkLen; bigger ones are refused
// without writing anything.
func TestSessionChunks(t *testing.T) {
	jar := jarFor(t, &PKCEAuth{CookieSecure: "never"}, httptest.NewRequest(http.MethodGet, "/", nil))
	sealedOf := func(n int) string {
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[(i*7+i/64)%len(alphabet)]
		}
		return string(b)
	}
	for _, n := range []int{1, 100, maxChunkLen - 1, maxChunkLen, maxChunkLen + 1, 2 * maxChunkLen, 3*maxChunkLen + 5, maxChunks * maxChunkLen, maxChunks*maxChunkLen + 1} {
		sealed := sealedOf(n)
		w := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		ok := jar.setSession(w, req, sealed, time.Hour)
		cookies := w.Result().Cookies()
		chunks := (n + maxChunkLen - 1) / maxChunkLen
		if chunks > maxChunks {
			if ok || len(cookies) != 0 {
				t.Errorf("%d characters: setSession = %v with %d cookies, want false and none", n, ok, len(cookies))
			}
			continue
		}
		if !ok || len(cookies) != chunks {
			t.Fatalf("%d characters: setSession = %v with %d cookies, want %d", n, ok, len(cookies), chunks)
		}
		back := httptest.NewRequest(http.MethodGet, "/", nil)
		for i, c := range cookies {
			if c.Name != jar.chunkName(i) {
				t.Errorf("cookie %d is named %q, want %q", i, c.Name, jar.chunkName(i))
			}
			if len(c.Value) > maxChunkLen+2 {
				t.Errorf("chunk %d is %d characters", i, len(c.Value))
			}
			if c.MaxAge != 3600 {
				t.Errorf("chunk %d Max-Age %d", i, c.MaxAge)
			}
			back.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
		if got := jar.readSession(back); got != sealed {
			t.Errorf("%d characters: readSession returned %d characters, not the value", n, len(got))
		}
		// Chunks reassembled in another order of the Cookie header.
		if chunks > 1 {
			shuffled := httptest.NewRequest(http.MethodGet, "/", nil)
			for i := len(cookies) - 1; i >= 0; i-- {
				shuffled.AddCookie(&http.Cookie{Name: cookies[i].Name, Value: cookies[i].Value})
			}
			if got := jar.readSession(shuffled); got != sealed {
				t.Errorf("%d characters: chunks in reverse order do not reassemble", n)
			}
		}
	}

	// Shrinking expires the chunks the request carried and no others.
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Cookie", "pkce_session=3.a; pkce_session_1=b; pkce_session_2=c")
	w := httptest.NewRecorder()
	if !jar.setSession(w, req, "small", time.Hour) {
		t.Fatal("small session refused")
	}
	var got []string
	for _, c := range w.Result().Cookies() {
		got = append(got, c.Name+"="+c.Value+"/"+map[bool]string{true: "expired", false: "live"}[c.MaxAge < 0])
	}
	if want := []string{"pkce_session=small/live", "pkce_session_1=/expired", "pkce_session_2=/expired"}; !slices.Equal(got, want) {
		t.Errorf("shrinking set %q, want %q", got, want)
	}

	// Inconsistent chunk sets read as no session.
	for _, header := range []string{
		"pkce_session=2.a",                   // chunk 1 missing
		"pkce_session=3.a; pkce_session_1=b", // chunk 2 missing
		"pkce_session=1.a",                   // count below 2
		"pkce_session=5.a; pkce_session_1=b; pkce_session_2=c; pkce_session_3=d; pkce_session_4=e", // above maxChunks
		"pkce_session=x.a; pkce_session_1=b",  // not a number
		"pkce_session=-2.a; pkce_session_1=b", // negative
		"pkce_session_1=b",                    // no first chunk
		"pkce_session=; pkce_session_1=b",     // empty first chunk
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Cookie", header)
		if got := jar.readSession(r); got != "" {
			t.Errorf("readSession(%q) = %q, want no session", header, got)
		}
	}

	// clearSession expires the first cookie always, and the chunks present.
	req = httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Cookie", "pkce_session=2.a; pkce_session_1=b; other=1")
	w = httptest.NewRecorder()
	jar.clearSession(w, req)
	got = got[:0]
	for _, c := range w.Result().Cookies() {
		if c.MaxAge >= 0 || c.Value != "" {
			t.Errorf("clearSession set a live cookie %v", c)
		}
		got = append(got, c.Name)
	}
	if want := []string{"pkce_session", "pkce_session_1"}; !slices.Equal(got, want) {
		t.Errorf("clearSession expired %q, want %q", got, want)
	}
}
