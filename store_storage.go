package pkceauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// storageBackend keeps sessions in the storage module Caddy is configured
// with (file system by default; Redis, Consul, S3... through storage
// plugins), so instances that share certificates share sessions. Storage
// has no expiry of its own: records are checked on every load (serverStore)
// and expired ones deleted then, when the same subject logs in again, and
// by a sweep every hour.
//
// Layout under pkce_auth/:
//
//	sessions/<id>             the sealed record
//	seen/<id>                 last use, unix seconds (touches)
//	subjects/<hash>/<id>      the subject index; holds the expiry
//	refresh/<id>              the refresh lock (storage lock name)
type storageBackend struct {
	storage certmagic.Storage
	id      string
	logger  *zap.Logger
	stop    chan struct{}
	once    sync.Once
}

const (
	storagePrefix     = "pkce_auth/"
	storageSessions   = storagePrefix + "sessions/"
	storageSeen       = storagePrefix + "seen/"
	storageSubjects   = storagePrefix + "subjects/"
	storageRefresh    = storagePrefix + "refresh/"
	storageSweepLock  = storagePrefix + "sweep"
	storageSweepEvery = time.Hour
	storageLockPoll   = 20 * time.Millisecond
)

func newStorageBackend(ctx caddy.Context, logger *zap.Logger) (*storageBackend, error) {
	storage := ctx.Storage()
	if storage == nil {
		return nil, errors.New("session: store caddy_storage needs Caddy's storage, and none is configured")
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%T %v", storage, storage))
	b := &storageBackend{
		storage: storage,
		id:      "caddy_storage:" + hex.EncodeToString(sum[:]),
		logger:  logger,
		stop:    make(chan struct{}),
	}
	go b.sweepEvery(storageSweepEvery)
	return b, nil
}

func (b *storageBackend) kind() string     { return storeCaddyStorage }
func (b *storageBackend) identity() string { return b.id }
func (b *storageBackend) close()           { b.once.Do(func() { close(b.stop) }) }

// subjectDir is the index folder of a subject: a hash, since subjects may
// hold any character.
func subjectDir(subject string) string {
	sum := sha256.Sum256([]byte(subject))
	return storageSubjects + hex.EncodeToString(sum[:16])
}

func (b *storageBackend) get(ctx context.Context, id string) (string, int64, error) {
	record, err := b.storage.Load(ctx, storageSessions+id)
	if errors.Is(err, fs.ErrNotExist) {
		return "", 0, errNotFound
	}
	if err != nil {
		return "", 0, err
	}
	var seen int64
	if raw, err := b.storage.Load(ctx, storageSeen+id); err == nil {
		seen, _ = strconv.ParseInt(string(raw), 10, 64)
	}
	return string(record), seen, nil
}

func (b *storageBackend) create(ctx context.Context, id, subject, record string, _ int64, expires time.Time) error {
	if err := b.storage.Store(ctx, storageSessions+id, []byte(record)); err != nil {
		return err
	}
	dir := subjectDir(subject)
	if err := b.storage.Store(ctx, dir+"/"+id, strconv.AppendInt(nil, expires.Unix(), 10)); err != nil {
		return err
	}
	// Clean what this subject left behind.
	b.sweep(ctx, dir)
	return nil
}

func (b *storageBackend) update(ctx context.Context, id, record string) (bool, error) {
	if !b.storage.Exists(ctx, storageSessions+id) {
		return false, nil
	}
	return true, b.storage.Store(ctx, storageSessions+id, []byte(record))
}

func (b *storageBackend) touch(ctx context.Context, id string, seen int64) error {
	if !b.storage.Exists(ctx, storageSessions+id) {
		return nil
	}
	if raw, err := b.storage.Load(ctx, storageSeen+id); err == nil {
		if cur, err := strconv.ParseInt(string(raw), 10, 64); err == nil && cur >= seen {
			return nil
		}
	}
	return b.storage.Store(ctx, storageSeen+id, strconv.AppendInt(nil, seen, 10))
}

func (b *storageBackend) delete(ctx context.Context, id, subject string) error {
	keys := []string{storageSessions + id, storageSeen + id}
	if subject != "" {
		keys = append(keys, subjectDir(subject)+"/"+id)
	}
	for _, k := range keys {
		if err := b.storage.Delete(ctx, k); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func (b *storageBackend) revokeSubject(ctx context.Context, subject string) (int, error) {
	dir := subjectDir(subject)
	entries, err := b.storage.List(ctx, dir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		id := path.Base(e)
		if b.storage.Exists(ctx, storageSessions+id) {
			n++
		}
		for _, k := range []string{storageSessions + id, storageSeen + id, e} {
			if err := b.storage.Delete(ctx, k); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return n, err
			}
		}
	}
	return n, nil
}

// lock uses the storage's lock: TryLock polled briefly when the storage
// has it (the file system does), else Lock.
func (b *storageBackend) lock(ctx context.Context, id string) (func(), error) {
	name := storageRefresh + id
	unlock := func() { _ = b.storage.Unlock(context.Background(), name) }
	try, ok := b.storage.(certmagic.TryLocker)
	if !ok {
		if err := b.storage.Lock(ctx, name); err != nil {
			if ctx.Err() != nil {
				return nil, errLockTimeout
			}
			return nil, err
		}
		return unlock, nil
	}
	for {
		got, err := try.TryLock(ctx, name)
		if err != nil {
			if ctx.Err() != nil {
				return nil, errLockTimeout
			}
			return nil, err
		}
		if got {
			return unlock, nil
		}
		select {
		case <-ctx.Done():
			return nil, errLockTimeout
		case <-time.After(storageLockPoll):
		}
	}
}

// sweepEvery deletes expired sessions periodically; one instance sweeps at
// a time (the others find the lock taken and skip).
func (b *storageBackend) sweepEvery(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		if try, ok := b.storage.(certmagic.TryLocker); ok {
			if got, err := try.TryLock(ctx, storageSweepLock); err == nil && got {
				b.sweep(ctx, storageSubjects)
				_ = b.storage.Unlock(context.Background(), storageSweepLock)
			}
		}
		cancel()
	}
}

// sweep deletes the expired sessions indexed under prefix.
func (b *storageBackend) sweep(ctx context.Context, prefix string) {
	entries, err := b.storage.List(ctx, prefix, true)
	if err != nil {
		return
	}
	t := now().Unix()
	removed := 0
	for _, e := range entries {
		raw, err := b.storage.Load(ctx, e)
		if err != nil {
			continue // a folder, or gone meanwhile
		}
		expires, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil || expires > t {
			continue
		}
		id := path.Base(e)
		for _, k := range []string{storageSessions + id, storageSeen + id, e} {
			_ = b.storage.Delete(ctx, k)
		}
		removed++
	}
	if removed > 0 {
		b.logger.Debug("expired sessions removed from storage", zap.Int("count", removed))
	}
}
