package pkceauth

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Cookie values are limited to about 4 KiB by browsers, name and attributes
// included; larger sessions are split into numbered chunk cookies.
const (
	maxChunkLen   = 3800
	maxChunks     = 4
	txnNamePrefix = "pkce_txn_"
	txnIDLength   = 16
)

// cookieJar decides names and attributes of the module's cookies for one
// request (the prefix and Secure depend on whether it came over TLS).
type cookieJar struct {
	secure      bool
	prefix      string // "__Host-", "__Secure-" or ""
	name        string // session cookie name with prefix
	chunkPrefix string // name + "_", the start of chunk cookie names
	txn         string // prefix of transaction cookie names
	domain      string
	path        string
	sameSite    http.SameSite
}

// cookies returns the jar for this request, built once per kind in
// Provision so the hot path does not concatenate names.
func (p *PKCEAuth) cookies(r *http.Request) *cookieJar {
	if p.CookieSecure == "always" || (p.CookieSecure == "auto" && r.TLS != nil) {
		return &p.jars[1]
	}
	return &p.jars[0]
}

// buildJars prepares the plain and the secure cookie jar.
func (p *PKCEAuth) buildJars() {
	p.jars = [2]cookieJar{p.newJar(false), p.newJar(true)}
}

func (p *PKCEAuth) newJar(secure bool) cookieJar {
	jar := cookieJar{
		secure:   secure,
		domain:   p.CookieDomain,
		path:     p.CookiePath,
		sameSite: sameSiteModes[strings.ToLower(p.CookieSameSite)],
	}
	if secure {
		// __Host- binds the cookie to this exact origin; it requires
		// Secure, Path=/ and no Domain. __Secure- only requires Secure.
		if p.CookieDomain == "" && p.CookiePath == "/" {
			jar.prefix = "__Host-"
		} else {
			jar.prefix = "__Secure-"
		}
	}
	jar.name = jar.prefix + p.CookieName
	jar.chunkPrefix = jar.name + "_"
	txn := jar.prefix
	if txn == "__Secure-" {
		txn = "__Host-"
	}
	jar.txn = txn + txnNamePrefix
	if p.providerName != "" {
		// Each named provider counts and evicts only its own pending
		// logins; names have no "_", so no prefix covers another's.
		jar.txn += p.providerName + "_"
	}
	return jar
}

// chunkName is the name of the i-th chunk of the session cookie.
func (j *cookieJar) chunkName(i int) string {
	if i == 0 {
		return j.name
	}
	return j.name + "_" + strconv.Itoa(i)
}

// txnName is the name of the transaction cookie of one login. Transaction
// cookies always use Path=/ so that the login start can count and evict
// them, and so the __Host- prefix can apply.
func (j *cookieJar) txnName(state string) string {
	return j.txn + state[:txnIDLength]
}

func (j *cookieJar) sessionCookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: name, Value: value, Path: j.path, Domain: j.domain,
		MaxAge: maxAge, Secure: j.secure, HttpOnly: true, SameSite: j.sameSite,
	}
}

// txnCookie builds a transaction cookie. With form_post the callback is a
// cross-site POST, which a Lax cookie would not accompany.
func (j *cookieJar) txnCookie(name, value string, maxAge int, formPost bool) *http.Cookie {
	sameSite := http.SameSiteLaxMode
	if formPost {
		sameSite = http.SameSiteNoneMode
	}
	return &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		Secure: j.secure || formPost, HttpOnly: true, SameSite: sameSite,
	}
}

// setSession writes the sealed session, split into chunks, and expires any
// chunk the request carried that the new value no longer needs.
func (j *cookieJar) setSession(w http.ResponseWriter, r *http.Request, sealed string, maxAge time.Duration) bool {
	n := (len(sealed) + maxChunkLen - 1) / maxChunkLen
	if n > maxChunks {
		return false
	}
	age := int(maxAge / time.Second)
	for i := range n {
		part := sealed[i*maxChunkLen : min((i+1)*maxChunkLen, len(sealed))]
		if i == 0 && n > 1 {
			part = strconv.Itoa(n) + "." + part
		}
		http.SetCookie(w, j.sessionCookie(j.chunkName(i), part, age))
	}
	for i := n; i < maxChunks; i++ {
		if cookieValue(r, j.chunkName(i)) != "" {
			http.SetCookie(w, j.sessionCookie(j.chunkName(i), "", -1))
		}
	}
	return true
}

// clearSession expires every session chunk the request carried.
func (j *cookieJar) clearSession(w http.ResponseWriter, r *http.Request) {
	for i := range maxChunks {
		if i == 0 || cookieValue(r, j.chunkName(i)) != "" {
			http.SetCookie(w, j.sessionCookie(j.chunkName(i), "", -1))
		}
	}
}

// readSession reassembles the sealed session value from its chunks; "" when
// absent or inconsistent.
func (j *cookieJar) readSession(r *http.Request) string {
	first := cookieValue(r, j.name)
	if first == "" {
		return ""
	}
	count, rest, chunked := strings.Cut(first, ".")
	if !chunked {
		return first // the common case: no allocation
	}
	n, err := strconv.Atoi(count)
	if err != nil || n < 2 || n > maxChunks {
		return ""
	}
	var b strings.Builder
	b.WriteString(rest)
	for i := 1; i < n; i++ {
		part := cookieValue(r, j.chunkName(i))
		if part == "" {
			return ""
		}
		b.WriteString(part)
	}
	return b.String()
}

// cookieValue returns the value of the named cookie without parsing every
// cookie into a new slice (this runs on every request).
func cookieValue(r *http.Request, name string) string {
	for _, line := range r.Header["Cookie"] {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimLeft(part, " ")
			k, v, ok := strings.Cut(part, "=")
			if ok && k == name {
				return strings.Trim(strings.TrimSpace(v), `"`)
			}
		}
	}
	return ""
}

// stripCookies removes the module's own cookies from the request passed
// upstream: the upstream has no use for them and should never see them.
// It allocates nothing when the request carries none of them or only them,
// and otherwise once, for the cookies that remain, joined into one line.
func (j *cookieJar) stripCookies(r *http.Request) {
	lines := r.Header["Cookie"]
	own, keep := j.scanCookies(lines)
	if !own {
		return
	}
	if keep == 0 {
		r.Header.Del("Cookie")
		return
	}
	var kept strings.Builder
	kept.Grow(keep)
	for _, line := range lines {
		for rest := line; len(rest) > 0; {
			var part string
			part, rest, _ = strings.Cut(rest, ";")
			if pair := strings.TrimSpace(part); pair != "" && !j.isOwnCookie(pair) {
				if kept.Len() > 0 {
					kept.WriteString("; ")
				}
				kept.WriteString(pair)
			}
		}
	}
	lines[0] = kept.String()
	r.Header["Cookie"] = lines[:1]
}

// scanCookies reports whether the Cookie header lines carry a cookie of the
// module's, and the length of the others joined with "; ".
func (j *cookieJar) scanCookies(lines []string) (own bool, keep int) {
	for _, line := range lines {
		for rest := line; len(rest) > 0; {
			var part string
			part, rest, _ = strings.Cut(rest, ";")
			switch pair := strings.TrimSpace(part); {
			case pair == "":
			case j.isOwnCookie(pair):
				own = true
			case keep > 0:
				keep += len("; ") + len(pair)
			default:
				keep = len(pair)
			}
		}
	}
	return own, keep
}

// isOwnCookie reports whether a "name=value" pair is one of the module's
// cookies: the session, its chunks, or a login transaction.
func (j *cookieJar) isOwnCookie(pair string) bool {
	name, _, _ := strings.Cut(pair, "=")
	return name == j.name || strings.HasPrefix(name, j.chunkPrefix) || strings.HasPrefix(name, j.txn)
}
