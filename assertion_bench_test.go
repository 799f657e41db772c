package pkceauth

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkServeHTTPAssertion is a whole authenticated request in cookie
// mode with an identity assertion configured: "cached" is the normal case,
// the session's assertion reused (the first request of the run mints it);
// "mint" is the cost of signing a new one (once per session per half
// lifetime), measured on its own.
func BenchmarkServeHTTPAssertion(b *testing.B) {
	keyFile, _ := writeKeyFile(b, false)
	s := newBenchSite(b, func(p *PKCEAuth) {
		p.Assertion = &AssertionConfig{
			Audience: "https://app.internal",
			Claims:   []string{"email", "groups"},
			KeyFiles: []string{keyFile}, // not Caddy's default storage in the user's home
		}
	})
	cookie := s.login(b)

	b.Run("cached", func(b *testing.B) {
		s.serveBatched(b, func() *http.Request { return authenticatedRequest(cookie) })
		// The assertion really is set.
		r := authenticatedRequest(cookie)
		if err := s.p.ServeHTTP(&benchWriter{h: http.Header{}}, r, s.next); err != nil {
			b.Fatal(err)
		}
		if r.Header.Get(defaultAssertionHeader) == "" {
			b.Fatal("no assertion set")
		}
	})

	b.Run("mint", func(b *testing.B) {
		r := httptest.NewRequest(http.MethodGet, benchOrigin+"/", nil)
		sess := s.p.activate(&session{UserID: "u", Subject: "u", Email: "u@example.com", Groups: []string{"a", "b"},
			Expires: time.Now().Add(time.Hour).Unix()})
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if _, err := s.p.mintAssertion(r, sess, time.Now().Unix()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
