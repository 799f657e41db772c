package pkceauth

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

func newTestStorageBackend(t *testing.T, dir string) *storageBackend {
	t.Helper()
	b := &storageBackend{
		storage: &certmagic.FileStorage{Path: dir},
		id:      "caddy_storage:test",
		logger:  zap.NewNop(),
		stop:    make(chan struct{}),
	}
	t.Cleanup(b.close)
	return b
}

func TestStorageBackend(t *testing.T) {
	dir := t.TempDir()
	backendContract(t, newTestStorageBackend(t, dir))

	ctx := context.Background()
	t.Run("two instances on one folder see the same sessions", func(t *testing.T) {
		a, b := newTestStorageBackend(t, dir), newTestStorageBackend(t, dir)
		if err := a.create(ctx, "shared", "dave", "rec", 1, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if rec, _, err := b.get(ctx, "shared"); err != nil || rec != "rec" {
			t.Fatalf("other instance reads %q, %v", rec, err)
		}
		unlock, err := a.lock(ctx, "shared")
		if err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		_, err = b.lock(short, "shared")
		cancel()
		if err != errLockTimeout {
			t.Fatalf("lock held by the other instance: %v, want errLockTimeout", err)
		}
		unlock()
		u, err := b.lock(ctx, "shared")
		if err != nil {
			t.Fatal(err)
		}
		u()
	})
	t.Run("expired sessions are swept: at the subject's next login and periodically", func(t *testing.T) {
		b := newTestStorageBackend(t, dir)
		past := time.Now().Add(-time.Minute)
		for _, id := range []string{"old1", "old2"} {
			if err := b.create(ctx, id, "erin", "rec", 1, past); err != nil {
				t.Fatal(err)
			}
		}
		// frank's expired session (made live, then aged in the index,
		// since a login sweeps its own subject's expired sessions).
		if err := b.create(ctx, "old3", "frank", "rec", 1, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := b.storage.Store(ctx, subjectDir("frank")+"/old3", []byte(strconv.FormatInt(past.Unix(), 10))); err != nil {
			t.Fatal(err)
		}
		// erin logs in again: her expired sessions go.
		if err := b.create(ctx, "new", "erin", "rec", 1, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"old1", "old2"} {
			if b.storage.Exists(ctx, storageSessions+id) {
				t.Fatalf("%s not swept at the subject's login", id)
			}
		}
		if !b.storage.Exists(ctx, storageSessions+"old3") {
			t.Fatal("another subject's session was swept at erin's login")
		}
		b.sweep(ctx, storageSubjects)
		if b.storage.Exists(ctx, storageSessions+"old3") {
			t.Fatal("old3 survived the periodic sweep")
		}
		if !b.storage.Exists(ctx, storageSessions+"new") {
			t.Fatal("the sweep removed a live session")
		}
	})
}
