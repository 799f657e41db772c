package pkceauth

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestParseAuthorization(t *testing.T) {
	const max = 64
	long := strings.Repeat("a", max+1)
	cases := []struct {
		name   string
		values []string
		token  string
		status int
	}{
		{"no header", nil, "", 0},
		{"bearer", []string{"Bearer abc.def.ghi"}, "abc.def.ghi", 0},
		{"lowercase scheme", []string{"bearer abc.def.ghi"}, "abc.def.ghi", 0},
		{"uppercase scheme", []string{"BEARER abc"}, "abc", 0},
		{"several spaces", []string{"Bearer   abc"}, "abc", 0},
		{"token68 padding and symbols", []string{"Bearer a-b_c~d+e/f=="}, "a-b_c~d+e/f==", 0},
		{"exactly the limit", []string{"Bearer " + long[:max]}, long[:max], 0},
		{"basic is not ours", []string{"Basic dXNlcjpwYXNz"}, "", 0},
		{"scheme without space is another scheme", []string{"Bearerabc"}, "", 0},
		{"bearer without token", []string{"Bearer"}, "", http.StatusBadRequest},
		{"bearer with only spaces", []string{"Bearer   "}, "", http.StatusBadRequest},
		{"two headers", []string{"Bearer a", "Bearer b"}, "", http.StatusBadRequest},
		{"bearer and basic", []string{"Basic x", "Bearer b"}, "", http.StatusBadRequest},
		{"two credentials in one header", []string{"Bearer a, Basic b"}, "", http.StatusBadRequest},
		{"trailing space", []string{"Bearer abc "}, "", http.StatusBadRequest},
		{"padding inside", []string{"Bearer ab=c"}, "", http.StatusBadRequest},
		{"only padding", []string{"Bearer =="}, "", http.StatusBadRequest},
		{"quote", []string{`Bearer a"b`}, "", http.StatusBadRequest},
		{"tab", []string{"Bearer\tabc"}, "", 0}, // not the Bearer scheme followed by SP
		{"oversize", []string{"Bearer " + long}, "", http.StatusUnauthorized},
	}
	for _, c := range cases {
		token, status, desc := parseAuthorization(c.values, max)
		if token != c.token || status != c.status {
			t.Errorf("%s: got (%q, %d, %q), want (%q, %d)", c.name, token, status, desc, c.token, c.status)
		}
		if status != 0 && (desc == "" || strings.ContainsAny(desc, "\"\\")) {
			t.Errorf("%s: description %q must be set and fit a quoted-string", c.name, desc)
		}
	}
}

func TestMissingScopes(t *testing.T) {
	cases := []struct {
		name     string
		claims   map[string]any
		required []string
		missing  []string
	}{
		{"nothing required", map[string]any{}, nil, nil},
		{"scope string", map[string]any{"scope": "openid read write"}, []string{"read", "write"}, nil},
		{"scope string missing one", map[string]any{"scope": "read"}, []string{"read", "write"}, []string{"write"}},
		{"scp array (Okta)", map[string]any{"scp": []any{"read", "write"}}, []string{"write"}, nil},
		{"scp string (Entra ID)", map[string]any{"scp": "User.Read read"}, []string{"read"}, nil},
		{"no scope claim", map[string]any{"sub": "x"}, []string{"read"}, []string{"read"}},
		{"prefix is not the scope", map[string]any{"scope": "reader"}, []string{"read"}, []string{"read"}},
		{"scope of another type", map[string]any{"scope": 42.0}, []string{"read"}, []string{"read"}},
		{"scope array", map[string]any{"scope": []any{"read"}}, []string{"read"}, nil},
		{"non-string array elements", map[string]any{"scp": []any{1.0, true}}, []string{"read"}, []string{"read"}},
	}
	for _, c := range cases {
		if got := missingScopes(c.claims, c.required); !slices.Equal(got, c.missing) {
			t.Errorf("%s: missing %q, want %q", c.name, got, c.missing)
		}
	}
}

// TestMetadataLocation is RFC 9728 §3.1's path insertion.
func TestMetadataLocation(t *testing.T) {
	cases := map[string]struct{ path, query string }{
		"https://api.example.com":            {"/.well-known/oauth-protected-resource", ""},
		"https://api.example.com/":           {"/.well-known/oauth-protected-resource", ""},
		"https://api.example.com/v1":         {"/.well-known/oauth-protected-resource/v1", ""},
		"https://api.example.com/v1/":        {"/.well-known/oauth-protected-resource/v1/", ""},
		"https://api.example.com/a/b?t=1":    {"/.well-known/oauth-protected-resource/a/b", "t=1"},
		"https://api.example.com:8443/x%20y": {"/.well-known/oauth-protected-resource/x%20y", ""},
	}
	for resource, want := range cases {
		u, err := url.Parse(resource)
		if err != nil {
			t.Fatal(err)
		}
		path, query := metadataLocation(u)
		if path != want.path || query != want.query {
			t.Errorf("%s: metadata at %q ?%q, want %q ?%q", resource, path, query, want.path, want.query)
		}
	}
}

func TestBearerChallenge(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "http://api.example/things", nil)
	off := &PKCEAuth{}
	if got := off.bearerChallenge(r, "", ""); got != "Bearer" {
		t.Errorf("bearer off: %q, want Bearer", got)
	}

	p := &PKCEAuth{Issuer: "https://idp.example", CookieSecure: "auto", logger: zap.NewNop(), provider: &provider{}}
	p.Bearer = &BearerConfig{Audiences: []string{"api"}, RequiredScopes: []string{"read", "write"}}
	p.cores = []*PKCEAuth{p}
	p.provisionBearer()
	if got, want := p.bearerChallenge(r, "", ""), `Bearer scope="read write"`; got != want {
		t.Errorf("no token: %q, want %q", got, want)
	}
	if got, want := p.bearerChallenge(r, "invalid_token", "the access token has expired"),
		`Bearer error="invalid_token", error_description="the access token has expired", scope="read write"`; got != want {
		t.Errorf("invalid token: %q, want %q", got, want)
	}

	// With metadata: its URL, from the request's origin or the resource.
	p.Bearer.ResourceMetadata = &ResourceMetadata{}
	p.cores = []*PKCEAuth{p}
	p.provisionBearer()
	if got, want := p.bearerChallenge(r, "insufficient_scope", "x"),
		`Bearer error="insufficient_scope", error_description="x", scope="read write", resource_metadata="http://api.example/.well-known/oauth-protected-resource"`; got != want {
		t.Errorf("with metadata: %q, want %q", got, want)
	}
	p.Bearer.ResourceMetadata = &ResourceMetadata{Resource: "https://api.example.com/v1"}
	p.Bearer.RequiredScopes = nil
	p.cores = []*PKCEAuth{p}
	p.provisionBearer()
	if got, want := p.bearerChallenge(r, "", ""), `Bearer resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/v1"`; got != want {
		t.Errorf("with a configured resource: %q, want %q", got, want)
	}
}

func TestTokenCacheBounds(t *testing.T) {
	c := newTokenCache(8)
	for i := range 100 {
		tok := strings.Repeat(string(rune('a'+i%26)), 10) + string(rune('0'+i/26))
		c.put(tok, &activeSession{session: &session{Expires: 1000}}, 10)
		if len(c.entries) > 8 {
			t.Fatalf("cache holds %d entries, limit 8", len(c.entries))
		}
	}
	// Byte budget: tokens larger than the whole budget are not kept.
	huge := strings.Repeat("x", 8*tokenCacheBytesPerEntry+1)
	c.put(huge, &activeSession{session: &session{Expires: 1000}}, 10)
	if c.get(huge) != nil {
		t.Error("a token larger than the byte budget was cached")
	}
	// Expired entries go first when the cache is full.
	c = newTokenCache(2)
	c.put("old", &activeSession{session: &session{Expires: 5}}, 1)
	c.put("live", &activeSession{session: &session{Expires: 1000}}, 1)
	c.put("new", &activeSession{session: &session{Expires: 1000}}, 10)
	if c.get("old") != nil || c.get("new") == nil {
		t.Errorf("full cache: expired entry kept or new one dropped: %v", c.entries)
	}
	sum := 0
	for k := range c.entries {
		sum += len(k)
	}
	if sum != c.size {
		t.Errorf("size %d, want %d", c.size, sum)
	}
}

// FuzzParseAuthorization: whatever the header says, a returned token is a
// token68 within the size limit, and every refusal has a description that
// fits a quoted WWW-Authenticate parameter.
func FuzzParseAuthorization(f *testing.F) {
	for _, seed := range []string{"Bearer abc.def.ghi", "bearer x", "Bearer", "Basic dXNlcg==", "Bearer a, b", "Bearer ==", "Bearer\x00x", "BEARER   a=="} {
		f.Add(seed, "")
		f.Add(seed, "Bearer second")
	}
	f.Fuzz(func(t *testing.T, first, second string) {
		values := []string{first}
		if second != "" {
			values = append(values, second)
		}
		token, status, desc := parseAuthorization(values, 64)
		if token != "" && (status != 0 || !isToken68(token) || len(token) > 64) {
			t.Fatalf("%q: token %q with status %d", values, token, status)
		}
		if len(values) > 1 && status != http.StatusBadRequest {
			t.Fatalf("%q: two headers gave status %d", values, status)
		}
		if status != 0 && (token != "" || desc == "" || strings.ContainsAny(desc, "\"\\\r\n")) {
			t.Fatalf("%q: status %d with token %q, description %q", values, status, token, desc)
		}
	})
}
