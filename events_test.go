package pkceauth

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-pkce/caddy-pkce/internal/testop"
)

// eventRecorder is an events handler module for the tests: it keeps every
// event it is given.
type eventRecorder struct{}

func init() { caddy.RegisterModule(eventRecorder{}) }

func (eventRecorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "events.handlers.pkce_test_recorder", New: func() caddy.Module { return new(eventRecorder) }}
}

type recordedEvent struct {
	name string
	data map[string]any
}

var recorded struct {
	sync.Mutex
	events []recordedEvent
}

func (eventRecorder) Handle(_ context.Context, e caddy.Event) error {
	recorded.Lock()
	recorded.events = append(recorded.events, recordedEvent{e.Name(), maps.Clone(e.Data)})
	recorded.Unlock()
	return nil
}

// takeEvents returns the events recorded since the last call.
func takeEvents() []recordedEvent {
	recorded.Lock()
	defer recorded.Unlock()
	out := recorded.events
	recorded.events = nil
	return out
}

// eventsApp subscribes the recorder to the module's events.
var eventsApp = map[string]any{"events": map[string]any{"subscriptions": []any{map[string]any{
	"events":   []string{"pkce_login", "pkce_login_failed", "pkce_logout", "pkce_store_down", "pkce_store_recovered"},
	"handlers": []any{map[string]any{"handler": "pkce_test_recorder"}},
}}}}

// expectEvents checks that exactly the named events were emitted since the
// last look, the last with the given data.
func expectEvents(t *testing.T, names []string, data map[string]any) {
	t.Helper()
	got := takeEvents()
	var gotNames []string
	for _, e := range got {
		gotNames = append(gotNames, e.name)
	}
	if !slices.Equal(gotNames, names) {
		t.Fatalf("events %v, want %v", gotNames, names)
	}
	last := got[len(got)-1].data
	for k, v := range data {
		if last[k] != v {
			t.Errorf("event %s: %s = %v, want %v (data %v)", names[len(names)-1], k, last[k], v, last)
		}
	}
}

// TestEvents: a login, a failed login and a logout each emit their Caddy
// event, which an events subscription receives with its data (never a
// token).
func TestEvents(t *testing.T) {
	op := testop.New(t, testop.Config{})
	s := startSite(t, op, siteOptions{apps: eventsApp})
	takeEvents()
	b := newBrowser(t, s)
	s.login(t, b, "/")
	expectEvents(t, []string{"pkce_login"}, map[string]any{"user_id": "alice-sub", "issuer": op.Issuer()})

	b2 := newBrowser(t, s)
	ls := s.startLogin(t, b2, "/")
	op.Misbehave(testop.Misbehaviour{WrongNonce: true})
	expectStatus(t, s.callback(b2, s.authorize(t, b2, ls)), http.StatusUnauthorized)
	op.Misbehave(testop.Misbehaviour{})
	expectEvents(t, []string{"pkce_login_failed"}, map[string]any{"issuer": op.Issuer()})

	expectStatus(t, b.navigate(s.base+"/oauth2/logout", "Sec-Fetch-Site", "same-origin"), http.StatusSeeOther)
	expectEvents(t, []string{"pkce_logout"}, map[string]any{"user_id": "alice-sub"})
}

// TestStoreEvents: a session store going down and coming back emits one
// event each, however many requests see it down.
func TestStoreEvents(t *testing.T) {
	srv := startTestRedis(t)
	op := testop.New(t, testop.Config{})
	s := startSite(t, op, siteOptions{apps: eventsApp, auth: map[string]any{"session": map[string]any{
		"store": "redis", "cache_ttl": -1, "redis": map[string]any{"addresses": []string{srv.addr()}},
	}}})
	b := newBrowser(t, s)
	s.login(t, b, "/")
	takeEvents()

	srv.save() // the restart brings the session back
	srv.kill()
	for range 3 {
		expectStatus(t, b.fetch(s.base+"/"), http.StatusServiceUnavailable)
	}
	expectEvents(t, []string{"pkce_store_down"}, map[string]any{"store": "redis", "issuer": op.Issuer()})

	srv.start()
	// The store is probed again every half second.
	for deadline := time.Now().Add(10 * time.Second); b.fetch(s.base+"/").Status != http.StatusOK; {
		if time.Now().After(deadline) {
			t.Fatal("the session did not come back with the store")
		}
		time.Sleep(100 * time.Millisecond)
	}
	expectEvents(t, []string{"pkce_store_recovered"}, map[string]any{"store": "redis"})
}
