package pkceauth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddy-pkce/caddy-pkce/internal/testop"
)

// adminRevoke posts to the running Caddy's admin endpoint.
func adminRevoke(t *testing.T, method, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, fmt.Sprintf("http://localhost:%d/pkce_auth/revoke", adminPort), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// TestAdminRevoke: POST /pkce_auth/revoke on Caddy's admin endpoint ends
// every session of a subject in the Redis store at once on this instance,
// and no one else's.
func TestAdminRevoke(t *testing.T) {
	srv := startTestRedis(t)
	op := newTestOP(t, testop.Config{})
	s := startSite(t, op, siteOptions{auth: map[string]any{
		"session": map[string]any{"store": "redis", "redis": map[string]any{"addresses": []string{srv.addr()}}},
	}})
	laptop, phone := newBrowser(t, s), newBrowser(t, s)
	s.login(t, laptop, "/")
	s.login(t, phone, "/")
	op.SetUser(testop.User{Subject: "bob-sub", Email: "bob@example.com"})
	bob := newBrowser(t, s)
	s.login(t, bob, "/")
	for _, b := range []*browser{laptop, phone, bob} {
		expectStatus(t, b.fetch(s.base+"/api"), http.StatusOK)
	}

	status, body := adminRevoke(t, http.MethodPost, `{"subject": "alice-sub"}`)
	if status != http.StatusOK {
		t.Fatalf("revoke: %d %s", status, body)
	}
	var got revokeResponse
	if err := json.Unmarshal([]byte(body), &got); err != nil || got.Revoked != 2 || got.Stores != 1 || got.Subject != "alice-sub" {
		t.Fatalf("revoke answered %s, want 2 sessions revoked in 1 store", body)
	}
	for name, b := range map[string]*browser{"laptop": laptop, "phone": phone} {
		expectStatus(t, b.fetch(s.base+"/api"), http.StatusUnauthorized)
		if r := b.navigate(s.base + "/page"); r.Status != http.StatusFound || !strings.HasPrefix(r.Location(), op.Issuer()) {
			t.Fatalf("%s after revocation: %v, want a new login", name, r)
		}
	}
	expectStatus(t, bob.fetch(s.base+"/api"), http.StatusOK)
	if keys := srv.client().Keys(context.Background(), "pkce:subject:alice-sub").Val(); len(keys) != 0 {
		t.Fatalf("subject index left: %v", keys)
	}

	for _, tc := range []struct {
		method, body string
		status       int
		want         string
	}{
		{http.MethodGet, "", http.StatusMethodNotAllowed, "use POST"},
		{http.MethodPost, `{}`, http.StatusBadRequest, "subject is required"},
		{http.MethodPost, `subject=alice`, http.StatusBadRequest, "must be JSON"},
		{http.MethodPost, `{"subject": "nobody"}`, http.StatusOK, `"revoked":0`},
	} {
		status, body := adminRevoke(t, tc.method, tc.body)
		if status != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("%s %q: %d %s, want %d containing %q", tc.method, tc.body, status, body, tc.status, tc.want)
		}
	}

	// Cookie sessions cannot be revoked: the API says so.
	s.reload(siteOptions{})
	if status, body := adminRevoke(t, http.MethodPost, `{"subject": "alice-sub"}`); status != http.StatusConflict || !strings.Contains(body, "cookie sessions cannot be revoked") {
		t.Fatalf("revoke with only cookie sessions: %d %s, want 409", status, body)
	}
}

// TestRevokeAcrossInstances: handlers sharing a store are revoked once,
// and every one of them forgets the sessions at once.
func TestRevokeAcrossInstances(t *testing.T) {
	srv := startTestRedis(t)
	op := newTestOP(t, testop.Config{})
	c := newTestCluster(t, op, clusterSpec{store: storeRedis, redisAddr: srv.addr()}, 2)
	b := c.browser()
	b.login("A")
	expectUser(t, b.get("A"), "A before")
	expectUser(t, b.get("B"), "B before (cached)")
	n, stores, err := revokeSubject(httptest.NewRequest(http.MethodPost, "/pkce_auth/revoke", nil), "alice-sub")
	if err != nil || n != 1 || stores != 1 {
		t.Fatalf("revoke: %d sessions in %d stores, %v; want 1 in 1", n, stores, err)
	}
	expectStatusCode(t, b.get("A"), http.StatusUnauthorized, "A after revocation")
	expectStatusCode(t, b.get("B"), http.StatusUnauthorized, "B after revocation (same process)")
}
