package pkceauth

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
)

// testRedis is a real redis-server (the Debian package; .ci/run installs
// it) on a free port of 127.0.0.1, without persistence except when a test
// asks for a SAVE, so that a restart can bring the data back.
type testRedis struct {
	t    testing.TB
	bin  string
	port int
	dir  string
	args []string
	cmd  *exec.Cmd
	out  *bytes.Buffer
	tls  *tls.Config // for a server that speaks only TLS
}

// redisServerBinary finds redis-server: missing, the test fails under CI
// (CI=true) and is skipped elsewhere.
func redisServerBinary(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/redis-server", "redis-server"} {
		if bin, err := exec.LookPath(p); err == nil {
			return bin
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("redis-server is not installed (apt-get install redis-server); CI must run the Redis tests")
	}
	t.Skip("redis-server is not installed (apt-get install redis-server)")
	return ""
}

// startTestRedis starts redis-server; extra are more server arguments.
func startTestRedis(t testing.TB, extra ...string) *testRedis {
	t.Helper()
	r := &testRedis{t: t, bin: redisServerBinary(t), port: pickFreePort(t), dir: t.TempDir()}
	r.args = append([]string{
		"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no",
		"--dir", r.dir, "--dbfilename", "dump.rdb",
	}, extra...)
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *testRedis) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

func (r *testRedis) start() {
	r.t.Helper()
	r.out = new(bytes.Buffer)
	r.cmd = exec.Command(r.bin, r.args...)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	r.cmd.SysProcAttr = dieWithParent()
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("starting redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.addr(), MaxRetries: -1, TLSConfig: r.tls})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil || strings.HasPrefix(err.Error(), "NOAUTH") {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server did not answer on %s: %v\n%s", r.addr(), err, r.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill ends the server at once (SIGKILL): what it has not saved is lost.
func (r *testRedis) kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// client is a plain client for inspecting and preparing data.
func (r *testRedis) client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.addr()})
	r.t.Cleanup(func() { c.Close() })
	return c
}

// save writes a snapshot that the next start loads.
func (r *testRedis) save() {
	r.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.addr()})
	defer c.Close()
	if err := c.Save(context.Background()).Err(); err != nil {
		r.t.Fatalf("SAVE: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "dump.rdb")); err != nil {
		r.t.Fatalf("SAVE wrote no dump: %v", err)
	}
}

// newTestRedisBackend is the backend as a handler would get it.
func newTestRedisBackend(t *testing.T, cfg RedisConfig) *redisBackend {
	t.Helper()
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	b, err := newRedisBackend(&cfg, caddy.NewReplacer(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.close)
	return b
}

// backendContract checks the semantics serverStore relies on, for every
// backend.
func backendContract(t *testing.T, b backend) {
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)

	if _, _, err := b.get(ctx, "missing"); err != errNotFound {
		t.Fatalf("get of a missing session: err %v, want errNotFound", err)
	}
	if err := b.create(ctx, "id1", "alice", "record-1", 100, exp); err != nil {
		t.Fatal(err)
	}
	if err := b.create(ctx, "id2", "alice", "record-2", 100, exp); err != nil {
		t.Fatal(err)
	}
	if err := b.create(ctx, "id3", "bob", "record-3", 100, exp); err != nil {
		t.Fatal(err)
	}
	rec, seen, err := b.get(ctx, "id1")
	if err != nil || rec != "record-1" {
		t.Fatalf("get: %q, %v", rec, err)
	}
	t.Run("touch only moves forward and keeps the record", func(t *testing.T) {
		for _, s := range []int64{200, 150} {
			if err := b.touch(ctx, "id1", s); err != nil {
				t.Fatal(err)
			}
		}
		rec, seen, err = b.get(ctx, "id1")
		if err != nil || rec != "record-1" || seen != 200 {
			t.Fatalf("after touches 200 then 150: record %q seen %d err %v; want record-1, 200", rec, seen, err)
		}
	})
	t.Run("update replaces the record, keeps the last use", func(t *testing.T) {
		ok, err := b.update(ctx, "id1", "record-1b")
		if err != nil || !ok {
			t.Fatalf("update: %v %v", ok, err)
		}
		rec, seen, _ = b.get(ctx, "id1")
		if rec != "record-1b" || seen != 200 {
			t.Fatalf("after update: %q %d", rec, seen)
		}
	})
	t.Run("update and touch of a deleted session do not bring it back", func(t *testing.T) {
		if err := b.delete(ctx, "id2", "alice"); err != nil {
			t.Fatal(err)
		}
		ok, err := b.update(ctx, "id2", "resurrected")
		if err != nil || ok {
			t.Fatalf("update after delete: ok %v err %v, want false, nil", ok, err)
		}
		if err := b.touch(ctx, "id2", 300); err != nil {
			t.Fatal(err)
		}
		if _, _, err := b.get(ctx, "id2"); err != errNotFound {
			t.Fatalf("deleted session readable: %v", err)
		}
	})
	t.Run("revoke removes all of a subject's sessions and only those", func(t *testing.T) {
		if err := b.create(ctx, "id4", "alice", "record-4", 100, exp); err != nil {
			t.Fatal(err)
		}
		n, err := b.revokeSubject(ctx, "alice")
		if err != nil || n != 2 {
			t.Fatalf("revoke alice: %d %v, want 2 (id1, id4)", n, err)
		}
		for _, id := range []string{"id1", "id4"} {
			if _, _, err := b.get(ctx, id); err != errNotFound {
				t.Fatalf("%s survived revocation: %v", id, err)
			}
		}
		if _, _, err := b.get(ctx, "id3"); err != nil {
			t.Fatalf("bob's session was revoked too: %v", err)
		}
		if n, err := b.revokeSubject(ctx, "nobody"); err != nil || n != 0 {
			t.Fatalf("revoke of an unknown subject: %d %v", n, err)
		}
	})
	t.Run("lock is exclusive and released", func(t *testing.T) {
		unlock, err := b.lock(ctx, "id3")
		if err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
		_, err = b.lock(short, "id3")
		cancel()
		if err != errLockTimeout {
			t.Fatalf("second lock while held: %v, want errLockTimeout", err)
		}
		got := make(chan error, 1)
		go func() {
			u, err := b.lock(ctx, "id3")
			if err == nil {
				u()
			}
			got <- err
		}()
		time.Sleep(50 * time.Millisecond)
		unlock()
		select {
		case err := <-got:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("waiter did not get the lock after unlock")
		}
	})
}

func TestRedisBackend(t *testing.T) {
	srv := startTestRedis(t)
	b := newTestRedisBackend(t, RedisConfig{Addresses: []string{srv.addr()}, KeyPrefix: "t:"})
	backendContract(t, b)

	c := srv.client()
	ctx := context.Background()
	t.Run("keys, TTL of the record and of the subject index", func(t *testing.T) {
		exp := time.Now().Add(90 * time.Second)
		if err := b.create(ctx, "ttl", "carol", "r", 1, exp); err != nil {
			t.Fatal(err)
		}
		ttl := c.PTTL(ctx, "t:session:ttl").Val()
		if ttl < 85*time.Second || ttl > 90*time.Second {
			t.Fatalf("record TTL %v, want the session's remaining lifetime (~90s)", ttl)
		}
		if !c.SIsMember(ctx, "t:subject:carol", "ttl").Val() {
			t.Fatal("session not in the subject index")
		}
		// A shorter session does not shorten the index.
		if err := b.create(ctx, "ttl2", "carol", "r", 1, time.Now().Add(10*time.Second)); err != nil {
			t.Fatal(err)
		}
		if ttl := c.PTTL(ctx, "t:subject:carol").Val(); ttl < 85*time.Second {
			t.Fatalf("subject index TTL %v shrank below its longest session", ttl)
		}
		if _, err := b.update(ctx, "ttl", "r2"); err != nil {
			t.Fatal(err)
		}
		if ttl := c.PTTL(ctx, "t:session:ttl").Val(); ttl < 85*time.Second {
			t.Fatalf("update lost the record's TTL: %v", ttl)
		}
	})
	t.Run("lock expires when its holder dies", func(t *testing.T) {
		if _, err := b.lock(ctx, "dead"); err != nil {
			t.Fatal(err)
		}
		if ttl := c.PTTL(ctx, "t:lock:dead").Val(); ttl <= 0 || ttl > 2*time.Second {
			t.Fatalf("lock TTL %v, want the configured 2s", ttl)
		}
	})
	t.Run("shared client per settings", func(t *testing.T) {
		b2 := newTestRedisBackend(t, RedisConfig{Addresses: []string{srv.addr()}, KeyPrefix: "t:"})
		if b2.client != b.client {
			t.Fatal("same settings made a second client")
		}
		b3 := newTestRedisBackend(t, RedisConfig{Addresses: []string{srv.addr()}, KeyPrefix: "u:"})
		if b3.client == b.client || b3.identity() == b.identity() {
			t.Fatal("different settings share a client or an identity")
		}
	})
}

// TestRedisBackendCluster runs the contract on Redis Cluster (one node
// owning every slot): every script and pipeline must work where keys live
// in different slots.
func TestRedisBackendCluster(t *testing.T) {
	srv := startTestRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	c := srv.client()
	ctx := context.Background()
	if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", "0", "16383").Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, _ := c.ClusterInfo(ctx).Result()
		if strings.Contains(info, "cluster_state:ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not ok:\n%s", info)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b := newTestRedisBackend(t, RedisConfig{Addresses: []string{srv.addr()}, Cluster: true})
	if _, ok := b.client.(*redis.ClusterClient); !ok {
		t.Fatalf("cluster: true made a %T", b.client)
	}
	backendContract(t, b)
}

func TestRedisConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  RedisConfig
		want string
	}{
		{"no address", RedisConfig{}, "needs addresses"},
		{"empty address", RedisConfig{Addresses: []string{""}}, "addresses[0] is empty"},
		{"db on cluster", RedisConfig{Addresses: []string{"a:1", "b:1"}, DB: 2}, "Cluster"},
		{"negative pool", RedisConfig{Addresses: []string{"a:1"}, PoolSize: -1}, "must not be negative"},
		{"tls settings without tls", RedisConfig{Addresses: []string{"a:1"}, TLS: &RedisTLS{ServerName: "x"}}, "not enabled"},
		{"ca_file without tls", RedisConfig{Addresses: []string{"a:1"}, TLS: &RedisTLS{CAFile: "ca.pem"}}, "not enabled"},
		{"client cert without key", RedisConfig{Addresses: []string{"a:1"}, TLS: &RedisTLS{Enabled: true, CertFile: "c.pem"}}, "go together"},
		{"sentinel password without sentinel", RedisConfig{Addresses: []string{"a:1"}, SentinelPassword: "x"}, "need master_name"},
		{"sentinel with db", RedisConfig{Addresses: []string{"a:1", "b:1"}, MasterName: "m", DB: 1}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestRedisPlaceholders: addresses and secrets take {env.*} placeholders,
// resolved in Provision.
func TestRedisPlaceholders(t *testing.T) {
	srv := startTestRedis(t, "--requirepass", "s3cret-pass")
	t.Setenv("PKCE_TEST_REDIS_ADDR", srv.addr())
	t.Setenv("PKCE_TEST_REDIS_PASSWORD", "s3cret-pass")
	b := newTestRedisBackend(t, RedisConfig{
		Addresses: []string{"{env.PKCE_TEST_REDIS_ADDR}"},
		Password:  "{env.PKCE_TEST_REDIS_PASSWORD}",
	})
	if err := b.client.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("placeholders not resolved: %v", err)
	}
}

// startSentinel starts a Sentinel watching master as "sessions"; conf is
// more sentinel.conf lines.
func startSentinel(t *testing.T, master *testRedis, conf string) *testRedis {
	t.Helper()
	s := &testRedis{t: t, bin: master.bin, port: pickFreePort(t), dir: t.TempDir()}
	file := filepath.Join(s.dir, "sentinel.conf")
	err := os.WriteFile(file, []byte(fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n"+
		"sentinel monitor sessions 127.0.0.1 %d 1\nsentinel down-after-milliseconds sessions 5000\n%s",
		s.port, s.dir, master.port, conf)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	s.args = []string{file, "--sentinel"}
	s.start()
	t.Cleanup(s.kill)
	return s
}

// TestRedisBackendSentinel runs the contract through Redis Sentinel
// (master_name): the client asks the Sentinel for the master.
func TestRedisBackendSentinel(t *testing.T) {
	master := startTestRedis(t)
	s := startSentinel(t, master, "")

	b := newTestRedisBackend(t, RedisConfig{Addresses: []string{s.addr()}, MasterName: "sessions"})
	backendContract(t, b)
	if n := master.client().Exists(context.Background(), "pkce:session:id3").Val(); n != 1 {
		t.Fatal("the records did not land on the master the Sentinel names")
	}
}

// TestRedisBackendSentinelPassword: Sentinels with their own requirepass
// are asked with sentinel_password; without it the master is not found.
func TestRedisBackendSentinelPassword(t *testing.T) {
	master := startTestRedis(t, "--requirepass", "master-secret")
	s := startSentinel(t, master, "requirepass sentinel-secret\nsentinel auth-pass sessions master-secret\n")

	b := newTestRedisBackend(t, RedisConfig{Addresses: []string{s.addr()}, MasterName: "sessions",
		Password: "master-secret", SentinelPassword: "sentinel-secret"})
	backendContract(t, b)

	without := newTestRedisBackend(t, RedisConfig{Addresses: []string{s.addr()}, MasterName: "sessions",
		Password: "master-secret", KeyPrefix: "other:"})
	if _, _, err := without.get(context.Background(), "x"); err == nil || err == errNotFound {
		t.Fatalf("a password-protected Sentinel answered without sentinel_password: %v", err)
	}
}

// tlsRedis is a redis-server that speaks only TLS (Debian's is built with
// it), with a self-signed certificate that is also the CA of client
// certificates, which it requires when clientAuth is set.
type tlsRedis struct {
	*testRedis
	certFile, keyFile string
}

func startTLSRedis(t *testing.T, clientAuth bool) *tlsRedis {
	t.Helper()
	cert := newTestCert(t)
	dir := t.TempDir()
	r := &tlsRedis{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem")}
	if err := os.WriteFile(r.certFile, []byte(cert.certPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.keyFile, []byte(cert.keyPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair([]byte(cert.certPEM), []byte(cert.keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	auth := "no"
	if clientAuth {
		auth = "yes"
	}
	r.testRedis = &testRedis{t: t, bin: redisServerBinary(t), port: pickFreePort(t), dir: dir,
		tls: &tls.Config{RootCAs: cert.pool, ServerName: "localhost", Certificates: []tls.Certificate{pair}}}
	r.args = []string{"--port", "0", "--tls-port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--tls-cert-file", r.certFile, "--tls-key-file", r.keyFile, "--tls-ca-cert-file", r.certFile,
		"--tls-auth-clients", auth, "--save", "", "--appendonly", "no", "--dir", dir}
	r.start()
	t.Cleanup(r.kill)
	return r
}

// TestRedisBackendTLS: a Redis that speaks only TLS is reached with tls
// enabled, and not without.
func TestRedisBackendTLS(t *testing.T) {
	s := startTLSRedis(t, false)
	certFile := s.certFile

	b := newTestRedisBackend(t, RedisConfig{Addresses: []string{s.addr()},
		TLS: &RedisTLS{Enabled: true, InsecureSkipVerify: true}})
	backendContract(t, b)

	plain := newTestRedisBackend(t, RedisConfig{Addresses: []string{s.addr()}, KeyPrefix: "plain:"})
	if _, _, err := plain.get(context.Background(), "x"); err == nil || err == errNotFound {
		t.Fatalf("plain TCP to a TLS-only Redis: %v, want a connection error", err)
	}
	verified := newTestRedisBackend(t, RedisConfig{Addresses: []string{s.addr()}, KeyPrefix: "v:",
		TLS: &RedisTLS{Enabled: true, ServerName: "localhost"}})
	if _, _, err := verified.get(context.Background(), "x"); err == nil || err == errNotFound {
		t.Fatalf("a self-signed certificate was accepted without insecure_skip_verify: %v", err)
	}
	// The private CA given as ca_file verifies the server.
	withCA := newTestRedisBackend(t, RedisConfig{Addresses: []string{s.addr()}, KeyPrefix: "ca:",
		TLS: &RedisTLS{Enabled: true, ServerName: "localhost", CAFile: certFile}})
	backendContract(t, withCA)
}

// TestRedisBackendTLSClientCert: a Redis that requires client certificates
// (tls-auth-clients yes) is reached with client_cert, and not without.
func TestRedisBackendTLSClientCert(t *testing.T) {
	s := startTLSRedis(t, true)
	certFile, keyFile, dir := s.certFile, s.keyFile, s.dir

	b := newTestRedisBackend(t, RedisConfig{Addresses: []string{s.addr()},
		TLS: &RedisTLS{Enabled: true, ServerName: "localhost", CAFile: certFile, CertFile: certFile, KeyFile: keyFile}})
	backendContract(t, b)

	anonymous := newTestRedisBackend(t, RedisConfig{Addresses: []string{s.addr()}, KeyPrefix: "anon:",
		TLS: &RedisTLS{Enabled: true, ServerName: "localhost", CAFile: certFile}})
	if _, _, err := anonymous.get(context.Background(), "x"); err == nil || err == errNotFound {
		t.Fatalf("a Redis requiring client certificates answered without one: %v", err)
	}
	if _, err := newRedisBackend(&RedisConfig{Addresses: []string{s.addr()},
		TLS: &RedisTLS{Enabled: true, CAFile: filepath.Join(dir, "missing.pem")}}, caddy.NewReplacer(), time.Second); err == nil || !strings.Contains(err.Error(), "ca_file") {
		t.Fatalf("a missing ca_file: %v, want an error naming it", err)
	}
}
