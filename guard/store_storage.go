package pkceguard

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func init() {
	caddy.RegisterModule(StorageStore{})
}

// StorageStore keeps bindings in Caddy's configured storage (the `storage`
// global option: the file system by default, or a shared backend such as a
// database), so every Caddy instance using that storage shares them.
//
// Storage has no atomic get-and-delete: Take holds the storage lock of the
// key around reading and deleting it, which makes a binding single-use as
// far as the storage's locks are reliable. Storage has no expiry either:
// records carry their own, and expired ones are swept every five minutes.
// Prefer the redis store when one is available.
type StorageStore struct {
	// The storage path under which records are kept. Default:
	// `pkce_guard/bindings`.
	Prefix string `json:"prefix,omitempty"`

	storage certmagic.Storage
	logger  *zap.Logger
	stop    chan struct{} // closed by Cleanup
	stopped chan struct{} // closed by the sweeper when it returns
}

// CaddyModule returns the Caddy module information.
func (StorageStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.pkce_guard.stores.storage",
		New: func() caddy.Module { return new(StorageStore) },
	}
}

// Provision gets Caddy's storage and starts the sweeper.
func (s *StorageStore) Provision(ctx caddy.Context) error {
	if s.Prefix == "" {
		s.Prefix = defaultStoragePrefix
	}
	s.Prefix = strings.Trim(s.Prefix, "/")
	s.storage = ctx.Storage()
	s.logger = ctx.Logger()
	s.stop = make(chan struct{})
	s.stopped = make(chan struct{})
	go s.sweepEvery(storageSweepInterval)
	return nil
}

// Cleanup stops the sweeper.
func (s *StorageStore) Cleanup() error {
	if s.stop != nil {
		close(s.stop)
		<-s.stopped
		s.stop = nil
	}
	return nil
}

// storageRecord is a value with its expiry, as kept in storage.
type storageRecord struct {
	Expires int64  `json:"exp"` // Unix nanoseconds
	Value   []byte `json:"v"`
}

// path turns a store key `<kind>:<hex>` into a storage key.
func (s *StorageStore) path(key string) string {
	return path.Join(s.Prefix, strings.ReplaceAll(key, ":", "/"))
}

// lockName is the storage lock guarding key.
func (s *StorageStore) lockName(key string) string {
	return "pkce_guard_" + strings.ReplaceAll(key, ":", "_")
}

// Put implements Store.
func (s *StorageStore) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	data, err := json.Marshal(storageRecord{Expires: now().Add(ttl).UnixNano(), Value: value})
	if err != nil {
		return err
	}
	return s.storage.Store(ctx, s.path(key), data)
}

// Add implements Store.
func (s *StorageStore) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	added := false
	err := s.locked(ctx, key, func() error {
		if _, live, err := s.load(ctx, key); err != nil || live {
			return err
		}
		added = true
		return s.Put(ctx, key, value, ttl)
	})
	return added, err
}

// Take implements Store.
func (s *StorageStore) Take(ctx context.Context, key string) ([]byte, error) {
	var value []byte
	err := s.locked(ctx, key, func() error {
		v, live, err := s.load(ctx, key)
		if err != nil || v == nil {
			return err
		}
		if err := s.storage.Delete(ctx, s.path(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if live {
			value = v
		}
		return nil
	})
	return value, err
}

// load reads the record under key: its value (nil when absent) and whether
// it is live.
func (s *StorageStore) load(ctx context.Context, key string) ([]byte, bool, error) {
	data, err := s.storage.Load(ctx, s.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var rec storageRecord
	if json.Unmarshal(data, &rec) != nil {
		return []byte{}, false, nil // corrupt: present, never live
	}
	if rec.Value == nil {
		rec.Value = []byte{}
	}
	return rec.Value, now().UnixNano() < rec.Expires, nil
}

// locked runs f holding the storage lock of key.
func (s *StorageStore) locked(ctx context.Context, key string, f func() error) error {
	name := s.lockName(key)
	if err := s.storage.Lock(ctx, name); err != nil {
		return err
	}
	defer func() { _ = s.storage.Unlock(context.WithoutCancel(ctx), name) }()
	return f()
}

// sweepEvery deletes expired records every interval until Cleanup.
func (s *StorageStore) sweepEvery(interval time.Duration) {
	defer close(s.stopped)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweep(context.Background())
		}
	}
}

// sweep deletes the expired records and reports how many.
func (s *StorageStore) sweep(ctx context.Context) int {
	keys, err := s.storage.List(ctx, s.Prefix, true)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			if c := s.logger.Check(zapcore.WarnLevel, "listing pkce_guard records to sweep"); c != nil {
				c.Write(zap.Error(err))
			}
		}
		return 0
	}
	n := 0
	for _, k := range keys {
		rel := strings.TrimPrefix(strings.TrimPrefix(k, s.Prefix), "/")
		kind, id, ok := strings.Cut(rel, "/")
		if !ok || strings.Contains(id, "/") || (kind != kindCode && kind != kindState) {
			continue // a directory, or not ours
		}
		key := kind + ":" + id
		_ = s.locked(ctx, key, func() error {
			v, live, err := s.load(ctx, key)
			if err != nil || v == nil || live {
				return err
			}
			n++
			return s.storage.Delete(ctx, s.path(key))
		})
	}
	return n
}

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	store storage {
//	    prefix <path>
//	}
func (s *StorageStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume store name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "prefix":
			if s.Prefix != "" {
				return d.Err("prefix may be given only once")
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			s.Prefix = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized subdirective %s", d.Val())
		}
	}
	return nil
}

const (
	defaultStoragePrefix = "pkce_guard/bindings"
	storageSweepInterval = 5 * time.Minute
)

// Interface guards
var (
	_ Store                 = (*StorageStore)(nil)
	_ caddy.Provisioner     = (*StorageStore)(nil)
	_ caddy.CleanerUpper    = (*StorageStore)(nil)
	_ caddyfile.Unmarshaler = (*StorageStore)(nil)
)
