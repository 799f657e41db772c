package pkceauth

import (
	"net/url"
	"strings"
)

// maxReturnPathLength bounds the return-to path kept in the login cookie.
const maxReturnPathLength = 2048

// safeReturnPath reports whether raw is a same-origin path that is safe to
// redirect to, and returns it without a fragment. Anything that a browser
// could read as another origin is refused: scheme-relative "//host",
// "/\host" (browsers treat \ as /), absolute URLs, control characters
// (browsers strip tabs and newlines, so "/\t/evil" becomes "//evil"), and
// the same tricks percent-encoded once or several times.
func safeReturnPath(raw string) (string, bool) {
	if raw == "" || len(raw) > maxReturnPathLength || raw[0] != '/' {
		return "", false
	}
	if i := strings.IndexByte(raw, '#'); i >= 0 {
		raw = raw[:i]
	}
	// Check the raw form and every decoded form: the target may be decoded
	// again by a proxy, an app or a browser quirk.
	s := raw
	for range 4 {
		if !plainSafePath(s) {
			return "", false
		}
		dec, err := url.PathUnescape(s)
		if err != nil {
			return "", false
		}
		if dec == s {
			break
		}
		s = dec
	}
	if !plainSafePath(s) {
		return "", false
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return "", false
	}
	return raw, true
}

// plainSafePath checks one (possibly decoded) form of a path.
func plainSafePath(s string) bool {
	if len(s) == 0 || s[0] != '/' {
		return false
	}
	if len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || c == '\\' {
			return false
		}
	}
	// Unicode tricks: fullwidth and other slash look-alikes that some
	// parsers fold into "/".
	return !strings.ContainsAny(s, "\u2215\u2044\uff0f\uff3c\u29f5\u29f8\u29f9\ufe68")
}

// returnPathOrRoot is safeReturnPath with the fallback the flow uses.
func returnPathOrRoot(raw string) string {
	if p, ok := safeReturnPath(raw); ok {
		return p
	}
	return "/"
}
