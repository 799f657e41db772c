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
// creating it under the storage lock on first use, so that every instance
// sharing the storage (and every restart) uses the same key.
func storedSessionKey(ctx caddy.Context) ([]byte, error) {
	storage := ctx.Storage()
	if storage == nil {
		return nil, errors.New("no storage configured")
	}
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if key, err := readStoredKey(c, storage.Load); err == nil {
		return key, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := storage.Lock(c, storageKeyName); err != nil {
		return nil, err
	}
	defer func() { _ = storage.Unlock(context.WithoutCancel(c), storageKeyName) }()
	if key, err := readStoredKey(c, storage.Load); err == nil {
		return key, nil // another instance created it meanwhile
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	key := randomBytes(32)
	if err := storage.Store(c, storageKeyName, []byte(base64.StdEncoding.EncodeToString(key))); err != nil {
		return nil, err
	}
	return key, nil
}

func readStoredKey(ctx context.Context, load func(context.Context, string) ([]byte, error)) ([]byte, error) {
	raw, err := load(ctx, storageKeyName)
	if err != nil {
		return nil, err
	}
	key, err := base64.StdEncoding.DecodeString(string(raw))
	if err != nil || len(key) < minKeyLength {
		return nil, errors.New("stored session key " + storageKeyName + " is corrupt; delete it to generate a new one (all sessions will end)")
	}
	return key, nil
}
