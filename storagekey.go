package pkceauth

import (
	"context"
	"encoding/base64"
	"errors"
	"io/fs"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// storageKeyName is where the generated session key lives in Caddy's storage.
const storageKeyName = "pkce_auth/session_key"

// storedSessionKey loads the session key from Caddy's configured storage,
// creating it on first use, so that every instance sharing the storage (and
// every restart) uses the same key.
func storedSessionKey(ctx caddy.Context) ([]byte, error) {
	return storedSecret(ctx, storageKeyName,
		func() []byte { return []byte(base64.StdEncoding.EncodeToString(randomBytes(32))) },
		parseStoredSessionKey)
}

func parseStoredSessionKey(raw []byte) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(string(raw))
	if err != nil || len(key) < minKeyLength {
		return nil, errors.New("stored session key " + storageKeyName + " is corrupt; delete it to generate a new one (all sessions will end)")
	}
	return key, nil
}

// storedSecret loads the secret kept in Caddy's storage under name and
// parses it. On first use it creates it under the storage lock, reading
// again once the lock is held, so that instances starting together agree
// on one value. create returns the stored form; parse must accept it.
func storedSecret[T any](ctx caddy.Context, name string, create func() []byte, parse func([]byte) (T, error)) (T, error) {
	var zero T
	storage := ctx.Storage()
	if storage == nil {
		return zero, errors.New("no storage configured")
	}
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	load := func() (T, error) {
		raw, err := storage.Load(c, name)
		if err != nil {
			return zero, err
		}
		return parse(raw)
	}
	if v, err := load(); !errors.Is(err, fs.ErrNotExist) {
		return v, err
	}
	if err := storage.Lock(c, name); err != nil {
		return zero, err
	}
	defer func() { _ = storage.Unlock(context.WithoutCancel(c), name) }()
	if v, err := load(); !errors.Is(err, fs.ErrNotExist) {
		return v, err // another instance created it meanwhile, or it is corrupt
	}
	raw := create()
	v, err := parse(raw)
	if err != nil {
		return zero, err
	}
	if err := storage.Store(c, name, raw); err != nil {
		return zero, err
	}
	return v, nil
}
