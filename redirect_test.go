package pkceauth

import (
	"net/url"
	"strings"
	"testing"
)

func TestSafeReturnPath(t *testing.T) {
	good := map[string]string{
		"root":            "/",
		"path":            "/docs/page",
		"query":           "/search?q=a+b&x=%2F",
		"fragment cut":    "/a#section",
		"encoded slash":   "/a%2Fb",
		"dot segments":    "/a/../b",
		"unicode":         "/caf%C3%A9",
		"colon in path":   "/a:b",
		"at in path":      "/user@host",
		"trailing double": "/a//",
	}
	for name, in := range good {
		t.Run("ok/"+name, func(t *testing.T) {
			got, ok := safeReturnPath(in)
			if !ok {
				t.Fatalf("safeReturnPath(%q) refused a same-origin path", in)
			}
			if want, _, _ := strings.Cut(in, "#"); got != want {
				t.Fatalf("safeReturnPath(%q) = %q, want %q", in, got, want)
			}
		})
	}
	bad := map[string]string{
		"empty":                   "",
		"relative":                "docs",
		"scheme":                  "https://evil.example/",
		"javascript":              "javascript:alert(1)",
		"scheme relative":         "//evil.example/",
		"backslash":               "/\\evil.example/",
		"backslash later":         "/a\\b",
		"encoded slash prefix":    "/%2Fevil.example",
		"encoded backslash":       "/%5Cevil.example",
		"double encoded":          "/%252Fevil.example",
		"triple encoded":          "/%25252Fevil.example",
		"tab":                     "/\t/evil.example",
		"newline":                 "/\n/evil.example",
		"encoded tab":             "/%09/evil.example",
		"encoded newline":         "/%0a/evil.example",
		"CRLF injection":          "/a%0d%0aSet-Cookie:x=y",
		"nul":                     "/a\x00",
		"del":                     "/a\x7f",
		"fullwidth slash":         "/\uff0fevil.example",
		"division slash":          "/\u2215evil.example",
		"bad escape":              "/%zz",
		"too long":                "/" + strings.Repeat("a", maxReturnPathLength),
		"data":                    "data:text/html,<script>alert(1)</script>",
		"space then slashes":      " //evil.example",
		"three slashes":           "///evil.example",
		"userinfo trick":          "//user@evil.example",
		"encoded userinfo":        "/%2F%2Fuser@evil.example",
		"backslash scheme":        "\\\\evil.example",
		"mixed slashes":           "/\\/evil.example",
		"encoded fullwidth slash": "/%EF%BC%8Fevil.example",
	}
	for name, in := range bad {
		t.Run("refused/"+name, func(t *testing.T) {
			if got, ok := safeReturnPath(in); ok {
				t.Fatalf("safeReturnPath(%q) = %q, accepted an unsafe target", in, got)
			}
			if got := returnPathOrRoot(in); got != "/" {
				t.Fatalf("returnPathOrRoot(%q) = %q, want /", in, got)
			}
		})
	}
}

// FuzzSafeReturnPath checks the invariant that matters: whatever is
// accepted resolves, against any base URL, to that base's own origin, also
// after the browser-like decoding and tab/newline stripping.
func FuzzSafeReturnPath(f *testing.F) {
	for _, s := range []string{"/", "/a?b=c", "//evil", "/\\evil", "/%2F/evil", "/\t/evil", "https://evil", "/%252F%252Fevil"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://site.example/dir/page")
	f.Fuzz(func(t *testing.T, in string) {
		got, ok := safeReturnPath(in)
		if !ok {
			return
		}
		for _, form := range []string{got, stripTabsNewlines(got), mustUnescape(got)} {
			ref, err := url.Parse(strings.ReplaceAll(form, "\\", "/"))
			if err != nil {
				continue
			}
			if u := base.ResolveReference(ref); u.Host != base.Host || u.Scheme != base.Scheme {
				t.Fatalf("accepted %q resolves to %s", in, u)
			}
		}
	})
}

func stripTabsNewlines(s string) string {
	return strings.NewReplacer("\t", "", "\n", "", "\r", "").Replace(s)
}

func mustUnescape(s string) string {
	u, err := url.PathUnescape(s)
	if err != nil {
		return s
	}
	return u
}
