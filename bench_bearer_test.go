package pkceauth

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-pkce/caddy-pkce/internal/testop"
)

// BenchmarkServeHTTPBearer is a whole request with a bearer token that was
// verified before (the token cache hit): header parsing, the cache lookup
// and expiry check, placeholders and headers, the next handler. "verify"
// empties the cache before each request, so each one checks the token's
// signature and claims in full (the first request of a token).
func BenchmarkServeHTTPBearer(b *testing.B) {
	for _, tc := range []struct {
		name   string
		verify bool
	}{
		{"cached", false},
		{"verify", true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := newBenchSite(b, func(p *PKCEAuth) {
				p.Bearer = &BearerConfig{Audiences: []string{"https://api.bench"}, RequiredScopes: []string{"read"}}
				p.Headers = map[string]string{"X-Forwarded-User": "preferred_username", "X-Forwarded-Email": "email"}
			})
			token := s.op.SignToken(s.op.AccessTokenClaims("https://api.bench", "openid read"), "at+jwt", testop.Genuine)
			newRequest := func() *http.Request {
				r := httptest.NewRequest(http.MethodGet, benchOrigin+"/api/things", nil)
				r.Header.Set("Accept", "application/json")
				r.Header.Set("Authorization", "Bearer "+token)
				caddyhttp.NewTestReplacer(r)
				return r
			}
			// Discovery and the key fetch happen once, before the timer.
			if err := s.p.ServeHTTP(&benchWriter{h: http.Header{}}, newRequest(), s.next); err != nil || s.next.served != 1 {
				b.Fatalf("token not accepted (%v)", err)
			}
			if !tc.verify {
				s.serveBatched(b, newRequest)
				return
			}
			w := &benchWriter{h: http.Header{}}
			s.next.served = 0
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				r := newRequest()
				s.p.bearer.cache.remove(token)
				b.StartTimer()
				if err := s.p.ServeHTTP(w, r, s.next); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if s.next.served != b.N {
				b.Fatalf("%d of %d requests reached the next handler", s.next.served, b.N)
			}
		})
	}
}
