package pkceguard

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"
)

func init() {
	caddy.RegisterModule(RedisStore{})
}

// RedisStore keeps bindings in Redis (6.2 or later), shared by every Caddy
// instance that uses the same server and key prefix. Records expire in
// Redis itself; a code's binding is taken with GETDEL, so it is used once
// even when two instances receive the same token request.
//
// The connection is opened lazily: Caddy starts while Redis is down, and
// the guard answers 503 until it is back.
type RedisStore struct {
	// Redis addresses, `host:port`. One address connects to a single
	// server, several to a cluster, and with master_name to Sentinels.
	// Accepts placeholders. Default: `["127.0.0.1:6379"]`.
	Addresses []string `json:"addresses,omitempty"`

	// The Sentinel master name; set it to use Redis Sentinel. Default:
	// none.
	MasterName string `json:"master_name,omitempty"`

	// The ACL user name. Accepts placeholders. Default: none.
	Username string `json:"username,omitempty"`

	// The password. Accepts `{env.*}` and `{file.*}` placeholders.
	// Default: none.
	Password string `json:"password,omitempty"`

	// The database number (single server and Sentinel only). Default: 0.
	DB int `json:"db,omitempty"`

	// Connect with TLS. Default: false.
	TLS bool `json:"tls,omitempty"`

	// Prepended to every key, so several guards or applications can share
	// a server. Default: `pkce_guard:`.
	KeyPrefix string `json:"key_prefix,omitempty"`

	// How long one Redis command may take before the guard gives up and
	// fails closed. Default: 2s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	client redis.UniversalClient
}

// CaddyModule returns the Caddy module information.
func (RedisStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.pkce_guard.stores.redis",
		New: func() caddy.Module { return new(RedisStore) },
	}
}

// Provision resolves placeholders and creates the client, without
// connecting.
func (s *RedisStore) Provision(ctx caddy.Context) error {
	if len(s.Addresses) == 0 {
		s.Addresses = []string{defaultRedisAddress}
	}
	if s.KeyPrefix == "" {
		s.KeyPrefix = defaultRedisKeyPrefix
	}
	if s.Timeout == 0 {
		s.Timeout = caddy.Duration(defaultRedisTimeout)
	}
	if s.Timeout < 0 {
		return fmt.Errorf("pkce_guard redis store: timeout %s must be positive", time.Duration(s.Timeout))
	}
	repl := caddy.NewReplacer()
	addrs := make([]string, len(s.Addresses))
	for i, a := range s.Addresses {
		addrs[i] = repl.ReplaceKnown(a, "")
		if addrs[i] == "" {
			return fmt.Errorf("pkce_guard redis store: addresses[%d] is empty after placeholders", i)
		}
	}
	opts := &redis.UniversalOptions{
		Addrs:        addrs,
		MasterName:   repl.ReplaceKnown(s.MasterName, ""),
		Username:     repl.ReplaceKnown(s.Username, ""),
		Password:     repl.ReplaceKnown(s.Password, ""),
		DB:           s.DB,
		DialTimeout:  time.Duration(s.Timeout),
		ReadTimeout:  time.Duration(s.Timeout),
		WriteTimeout: time.Duration(s.Timeout),
	}
	if s.TLS {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	s.client = redis.NewUniversalClient(opts)
	return nil
}

// Cleanup closes the client.
func (s *RedisStore) Cleanup() error {
	if s.client != nil {
		return s.client.Close()
	}
	return nil
}

// Put implements Store.
func (s *RedisStore) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(s.Timeout))
	defer cancel()
	return s.client.Set(ctx, s.KeyPrefix+key, value, ttl).Err()
}

// Add implements Store.
func (s *RedisStore) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(s.Timeout))
	defer cancel()
	return s.client.SetNX(ctx, s.KeyPrefix+key, value, ttl).Result()
}

// Take implements Store.
func (s *RedisStore) Take(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(s.Timeout))
	defer cancel()
	v, err := s.client.GetDel(ctx, s.KeyPrefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return v, err
}

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	store redis {
//	    addresses   <host:port...>
//	    master_name <name>
//	    username    <user>
//	    password    <password>
//	    db          <n>
//	    tls
//	    key_prefix  <prefix>
//	    timeout     <duration>
//	}
func (s *RedisStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume store name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		sub := d.Val()
		if seen[sub] {
			return d.Errf("%s may be given only once", sub)
		}
		seen[sub] = true
		switch sub {
		case "addresses":
			s.Addresses = d.RemainingArgs()
			if len(s.Addresses) == 0 {
				return d.ArgErr()
			}
		case "master_name", "username", "password", "key_prefix":
			if !d.NextArg() {
				return d.ArgErr()
			}
			v := d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			switch sub {
			case "master_name":
				s.MasterName = v
			case "username":
				s.Username = v
			case "password":
				s.Password = v
			case "key_prefix":
				s.KeyPrefix = v
			}
		case "db":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 0 {
				return d.Errf("db must be a database number, not %q", d.Val())
			}
			s.DB = n
			if d.NextArg() {
				return d.ArgErr()
			}
		case "tls":
			if d.NextArg() {
				return d.ArgErr()
			}
			s.TLS = true
		case "timeout":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur <= 0 {
				return d.Errf("timeout must be a positive duration, not %q", d.Val())
			}
			s.Timeout = caddy.Duration(dur)
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized subdirective %s", sub)
		}
	}
	return nil
}

const (
	defaultRedisAddress   = "127.0.0.1:6379"
	defaultRedisKeyPrefix = "pkce_guard:"
	defaultRedisTimeout   = 2 * time.Second
)

// Interface guards
var (
	_ Store                 = (*RedisStore)(nil)
	_ caddy.Provisioner     = (*RedisStore)(nil)
	_ caddy.CleanerUpper    = (*RedisStore)(nil)
	_ caddyfile.Unmarshaler = (*RedisStore)(nil)
)
