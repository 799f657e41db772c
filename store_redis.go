package pkceauth

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// RedisConfig is the connection to Redis for the `redis` session store. One
// client (go-redis UniversalClient) is shared by every handler and config
// reload with the same settings: with master_name it talks to Sentinel,
// with several addresses or cluster set to a Redis Cluster, otherwise to a
// single node. It connects lazily: Redis being down never fails the config
// load; requests that need it get 503 until it is back.
type RedisConfig struct {
	// host:port of the node, of the Sentinels (with master_name) or of
	// some Cluster nodes. Accepts placeholders such as {env.REDIS_ADDR}.
	// Required.
	Addresses []string `json:"addresses,omitempty"`

	// ACL user name (Redis 6+). Accepts placeholders. Default: none.
	Username string `json:"username,omitempty"`

	// Password (requirepass or the ACL user's). Accepts `{env.*}` and
	// `{file.*}` placeholders. Default: none.
	Password string `json:"password,omitempty"`

	// Database number (single node and Sentinel only). Default: 0.
	DB int `json:"db,omitempty"`

	// The Sentinel master set name; setting it uses Sentinel.
	// Default: none.
	MasterName string `json:"master_name,omitempty"`

	// ACL user name and password of the Sentinels themselves (Sentinel's
	// own requirepass), when they differ from the master's. Accept
	// `{env.*}` and `{file.*}` placeholders. Default: none.
	SentinelUsername string `json:"sentinel_username,omitempty"`
	SentinelPassword string `json:"sentinel_password,omitempty"`

	// Use Redis Cluster even with a single seed address. Default: false
	// (Cluster only when more than one address is given).
	Cluster bool `json:"cluster,omitempty"`

	// TLS to Redis. Default: plain TCP.
	TLS *RedisTLS `json:"tls,omitempty"`

	// Prefix of every key this module writes: `<prefix>session:<id>`,
	// `<prefix>subject:<sub>`, `<prefix>lock:<id>`. Default: `pkce:`.
	KeyPrefix string `json:"key_prefix,omitempty"`

	// Connections per node. Default: go-redis's (10 per CPU).
	PoolSize int `json:"pool_size,omitempty"`

	// Timeouts of one connection attempt, one read and one write.
	// Defaults: 2s, 1s, 1s.
	DialTimeout  caddy.Duration `json:"dial_timeout,omitempty"`
	ReadTimeout  caddy.Duration `json:"read_timeout,omitempty"`
	WriteTimeout caddy.Duration `json:"write_timeout,omitempty"`
}

// RedisTLS configures TLS to Redis.
type RedisTLS struct {
	// Connect with TLS. Default: false.
	Enabled bool `json:"enabled,omitempty"`
	// Skip verifying the server's certificate. For tests only.
	// Default: false.
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`
	// The name to verify the certificate against. Default: the host of
	// the address.
	ServerName string `json:"server_name,omitempty"`
	// PEM file of the CA certificates that sign the server's certificate,
	// for a Redis with a private CA. Default: the system's roots.
	CAFile string `json:"ca_file,omitempty"`
	// PEM files of the client certificate and its key, for a Redis that
	// requires client certificates (tls-auth-clients yes). Both or
	// neither. Default: none.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
}

// Redis defaults.
const (
	defaultRedisKeyPrefix    = "pkce:"
	defaultRedisDialTimeout  = 2 * time.Second
	defaultRedisReadTimeout  = time.Second
	defaultRedisWriteTimeout = time.Second
	// redisLockPoll is how often a waiter tries the refresh lock again.
	redisLockPoll = 20 * time.Millisecond
)

func (c *RedisConfig) setDefaults() {
	if c.KeyPrefix == "" {
		c.KeyPrefix = defaultRedisKeyPrefix
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = caddy.Duration(defaultRedisDialTimeout)
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = caddy.Duration(defaultRedisReadTimeout)
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = caddy.Duration(defaultRedisWriteTimeout)
	}
}

func (c *RedisConfig) validate() error {
	if len(c.Addresses) == 0 {
		return errors.New("session: redis needs addresses (host:port of the node, the Sentinels or Cluster seeds)")
	}
	for i, a := range c.Addresses {
		if a == "" {
			return fmt.Errorf("session: redis addresses[%d] is empty", i)
		}
	}
	if c.DB < 0 {
		return errors.New("session: redis db must not be negative")
	}
	if c.DB != 0 && (c.Cluster || len(c.Addresses) > 1 && c.MasterName == "") {
		return errors.New("session: redis db cannot be used with Redis Cluster (it has database 0 only)")
	}
	if c.PoolSize < 0 || c.DialTimeout < 0 || c.ReadTimeout < 0 || c.WriteTimeout < 0 {
		return errors.New("session: redis pool_size and timeouts must not be negative")
	}
	if t := c.TLS; t != nil {
		if !t.Enabled && (t.InsecureSkipVerify || t.ServerName != "" || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "") {
			return errors.New("session: redis tls settings are given but tls is not enabled; add \"enabled\": true")
		}
		if (t.CertFile == "") != (t.KeyFile == "") {
			return errors.New("session: redis tls cert_file and key_file go together")
		}
	}
	if (c.SentinelUsername != "" || c.SentinelPassword != "") && c.MasterName == "" {
		return errors.New("session: redis sentinel_username and sentinel_password need master_name (Sentinel)")
	}
	return nil
}

// redisClients shares clients between handlers and across config reloads,
// keyed by their resolved settings; the last user closes it.
var redisClients = caddy.NewUsagePool()

type pooledRedis struct{ redis.UniversalClient }

func (c pooledRedis) Destruct() error { return c.Close() }

type redisBackend struct {
	client  redis.UniversalClient
	poolKey string
	prefix  string
	lockTTL time.Duration
}

// newRedisBackend resolves placeholders and gets the shared client. It does
// not connect.
func newRedisBackend(cfg *RedisConfig, repl *caddy.Replacer, lockTTL time.Duration) (*redisBackend, error) {
	resolved := *cfg
	resolved.Addresses = make([]string, len(cfg.Addresses))
	for i, a := range cfg.Addresses {
		resolved.Addresses[i] = repl.ReplaceKnown(a, "")
	}
	resolved.Username = repl.ReplaceKnown(cfg.Username, "")
	resolved.Password = repl.ReplaceKnown(cfg.Password, "")
	resolved.MasterName = repl.ReplaceKnown(cfg.MasterName, "")
	resolved.SentinelUsername = repl.ReplaceKnown(cfg.SentinelUsername, "")
	resolved.SentinelPassword = repl.ReplaceKnown(cfg.SentinelPassword, "")
	var tlsConfig *tls.Config
	var tlsFiles []byte // the files' contents, so that a changed file makes a new client
	if cfg.TLS != nil {
		t := *cfg.TLS
		t.ServerName = repl.ReplaceKnown(t.ServerName, "")
		t.CAFile = repl.ReplaceKnown(t.CAFile, "")
		t.CertFile = repl.ReplaceKnown(t.CertFile, "")
		t.KeyFile = repl.ReplaceKnown(t.KeyFile, "")
		resolved.TLS = &t
		if t.Enabled {
			var err error
			if tlsConfig, tlsFiles, err = redisTLSConfig(&t); err != nil {
				return nil, err
			}
		}
	}
	for i, a := range resolved.Addresses {
		if a == "" {
			return nil, fmt.Errorf("session: redis addresses[%d] is empty after placeholders are resolved", i)
		}
	}
	raw, err := json.Marshal(resolved)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append(raw, tlsFiles...))
	key := hex.EncodeToString(sum[:])

	opts := &redis.UniversalOptions{
		Addrs:            resolved.Addresses,
		Username:         resolved.Username,
		Password:         resolved.Password,
		DB:               resolved.DB,
		MasterName:       resolved.MasterName,
		SentinelUsername: resolved.SentinelUsername,
		SentinelPassword: resolved.SentinelPassword,
		IsClusterMode:    resolved.Cluster,
		PoolSize:         resolved.PoolSize,
		DialTimeout:      time.Duration(resolved.DialTimeout),
		ReadTimeout:      time.Duration(resolved.ReadTimeout),
		WriteTimeout:     time.Duration(resolved.WriteTimeout),
		// Fail fast: a request waiting on a store that is down should get
		// its 503 in milliseconds, not after seconds of retries; the
		// store's health check (storeHealth) retries on its own.
		MaxRetries:         1,
		DialerRetries:      1,
		DialerRetryTimeout: 50 * time.Millisecond,
		// No push-notification handshake: older servers and proxies do
		// not know the command.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	opts.TLSConfig = tlsConfig
	val, _, err := redisClients.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledRedis{redis.NewUniversalClient(opts)}, nil
	})
	if err != nil {
		return nil, err
	}
	return &redisBackend{
		client:  val.(pooledRedis).UniversalClient,
		poolKey: key,
		prefix:  resolved.KeyPrefix,
		lockTTL: lockTTL,
	}, nil
}

// redisTLSConfig builds the TLS settings, reading the CA and client
// certificate files now so that a missing or bad file fails the config
// load with its name rather than every connection later. It also returns
// the files' contents for the client's pool key.
func redisTLSConfig(t *RedisTLS) (*tls.Config, []byte, error) {
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // explicit opt-in, documented as for tests
	}
	var files []byte
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("session: redis tls ca_file: %v", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("session: redis tls ca_file %s holds no PEM certificate", t.CAFile)
		}
		files = append(files, pem...)
	}
	if t.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("session: redis tls cert_file/key_file: %v", err)
		}
		c.Certificates = []tls.Certificate{pair}
		for _, der := range pair.Certificate {
			files = append(files, der...)
		}
		// The key itself stays out of the pool key: the certificate
		// changes whenever the key does.
	}
	return c, files, nil
}

func (b *redisBackend) kind() string     { return storeRedis }
func (b *redisBackend) identity() string { return "redis:" + b.poolKey + ":" + b.prefix }

func (b *redisBackend) sessionKey(id string) string      { return b.prefix + "session:" + id }
func (b *redisBackend) subjectKey(subject string) string { return b.prefix + "subject:" + subject }
func (b *redisBackend) lockKey(id string) string         { return b.prefix + "lock:" + id }
func (b *redisBackend) close()                           { _, _ = redisClients.Delete(b.poolKey) }
func redisMillis(t time.Time) string                     { return strconv.FormatInt(t.UnixMilli(), 10) }
func redisSeconds(t int64) string                        { return strconv.FormatInt(t, 10) }
func (b *redisBackend) run(ctx context.Context, s *redis.Script, key string, args ...any) *redis.Cmd {
	return s.Run(ctx, b.client, []string{key}, args...)
}

// A session is a hash: r the sealed record, ls its last use. The key
// expires with the session's absolute lifetime. Each script touches one
// key, so all of them work on Redis Cluster.
var (
	redisCreate = redis.NewScript(`
redis.call('HSET', KEYS[1], 'r', ARGV[1], 'ls', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1`)
	// The subject index lives as long as its longest session.
	redisIndex = redis.NewScript(`
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1`)
	redisUpdate = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'r', ARGV[1])
return 1`)
	redisTouch = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local seen = tonumber(redis.call('HGET', KEYS[1], 'ls') or '0')
if seen < tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'ls', ARGV[1]) end
return 1`)
	redisUnlock = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)
)

func (b *redisBackend) get(ctx context.Context, id string) (string, int64, error) {
	vals, err := b.client.HMGet(ctx, b.sessionKey(id), "r", "ls").Result()
	if err != nil {
		return "", 0, err
	}
	record, _ := vals[0].(string)
	if record == "" {
		return "", 0, errNotFound
	}
	seenText, _ := vals[1].(string)
	seen, _ := strconv.ParseInt(seenText, 10, 64)
	return record, seen, nil
}

func (b *redisBackend) create(ctx context.Context, id, subject, record string, seen int64, expires time.Time) error {
	if err := b.run(ctx, redisCreate, b.sessionKey(id), record, redisSeconds(seen), redisMillis(expires)).Err(); err != nil {
		return err
	}
	ttl := max(time.Until(expires), time.Second)
	return b.run(ctx, redisIndex, b.subjectKey(subject), id, strconv.FormatInt(ttl.Milliseconds(), 10)).Err()
}

func (b *redisBackend) update(ctx context.Context, id, record string) (bool, error) {
	n, err := b.run(ctx, redisUpdate, b.sessionKey(id), record).Int()
	return n == 1, err
}

func (b *redisBackend) touch(ctx context.Context, id string, seen int64) error {
	return b.run(ctx, redisTouch, b.sessionKey(id), redisSeconds(seen)).Err()
}

func (b *redisBackend) delete(ctx context.Context, id, subject string) error {
	_, err := b.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Del(ctx, b.sessionKey(id))
		if subject != "" {
			pipe.SRem(ctx, b.subjectKey(subject), id)
		}
		return nil
	})
	return err
}

func (b *redisBackend) revokeSubject(ctx context.Context, subject string) (int, error) {
	ids, err := b.client.SMembers(ctx, b.subjectKey(subject)).Result()
	if err != nil {
		return 0, err
	}
	dels := make([]*redis.IntCmd, 0, len(ids))
	_, err = b.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, id := range ids {
			dels = append(dels, pipe.Del(ctx, b.sessionKey(id)))
		}
		pipe.Del(ctx, b.subjectKey(subject))
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, d := range dels {
		n += int(d.Val())
	}
	return n, nil
}

// lock is SET NX PX with a random token, polled until it is free; unlock
// deletes it only if it still holds this token (it may have expired and
// been taken by another instance).
func (b *redisBackend) lock(ctx context.Context, id string) (func(), error) {
	key, token := b.lockKey(id), randomToken()
	for {
		ok, err := b.client.SetNX(ctx, key, token, b.lockTTL).Result()
		if err != nil {
			if ctx.Err() != nil {
				return nil, errLockTimeout
			}
			return nil, err
		}
		if ok {
			return func() {
				ctx, cancel := context.WithTimeout(context.Background(), b.lockTTL)
				defer cancel()
				_ = b.run(ctx, redisUnlock, key, token).Err()
			}, nil
		}
		select {
		case <-ctx.Done():
			return nil, errLockTimeout
		case <-time.After(redisLockPoll):
		}
	}
}

// errLockTimeout: the refresh lock stayed taken longer than the request
// could wait. The store works; something holds the lock too long.
var errLockTimeout = errors.New("timed out waiting for the refresh lock")
