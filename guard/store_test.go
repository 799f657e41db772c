package pkceguard

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

// testStore checks the Store contract. advance moves time forward by d as
// the store sees it; takers is how many goroutines race for one key.
func testStore(t *testing.T, s Store, advance func(d time.Duration), takers int) {
	ctx := context.Background()
	key := func(n int) string { return storeKey(kindCode, t.Name()+strconv.Itoa(n)) }
	const ttl = time.Minute

	t.Run("take of an absent key", func(t *testing.T) {
		if v, err := s.Take(ctx, key(1)); v != nil || err != nil {
			t.Errorf("Take = %q, %v; want nil, nil", v, err)
		}
	})
	t.Run("put then take once", func(t *testing.T) {
		if err := s.Put(ctx, key(2), []byte("v2"), ttl); err != nil {
			t.Fatal(err)
		}
		if v, err := s.Take(ctx, key(2)); string(v) != "v2" || err != nil {
			t.Errorf("Take = %q, %v; want v2", v, err)
		}
		if v, err := s.Take(ctx, key(2)); v != nil || err != nil {
			t.Errorf("second Take = %q, %v; want nil", v, err)
		}
	})
	t.Run("put replaces", func(t *testing.T) {
		_ = s.Put(ctx, key(3), []byte("old"), ttl)
		_ = s.Put(ctx, key(3), []byte("new"), ttl)
		if v, _ := s.Take(ctx, key(3)); string(v) != "new" {
			t.Errorf("Take = %q, want new", v)
		}
	})
	t.Run("add only if absent", func(t *testing.T) {
		if ok, err := s.Add(ctx, key(4), []byte("first"), ttl); !ok || err != nil {
			t.Fatalf("Add to an absent key = %v, %v", ok, err)
		}
		if ok, err := s.Add(ctx, key(4), []byte("second"), ttl); ok || err != nil {
			t.Fatalf("Add to a present key = %v, %v; want false", ok, err)
		}
		if v, _ := s.Take(ctx, key(4)); string(v) != "first" {
			t.Errorf("Take = %q, want first", v)
		}
	})
	t.Run("values expire", func(t *testing.T) {
		short := 200 * time.Millisecond
		_ = s.Put(ctx, key(5), []byte("v5"), short)
		_ = s.Put(ctx, key(6), []byte("v6"), short)
		advance(2 * short)
		if v, err := s.Take(ctx, key(5)); v != nil || err != nil {
			t.Errorf("Take of an expired value = %q, %v; want nil", v, err)
		}
		if ok, err := s.Add(ctx, key(6), []byte("again"), ttl); !ok || err != nil {
			t.Errorf("Add over an expired value = %v, %v; want true", ok, err)
		}
	})
	t.Run("concurrent takes: one winner", func(t *testing.T) {
		for round := range 3 {
			k := key(100 + round)
			_ = s.Put(ctx, k, []byte("once"), ttl)
			var wins atomic.Int32
			var wg sync.WaitGroup
			for range takers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					v, err := s.Take(ctx, k)
					if err != nil {
						t.Error(err)
					}
					if v != nil {
						wins.Add(1)
					}
				}()
			}
			wg.Wait()
			if wins.Load() != 1 {
				t.Fatalf("%d concurrent Takes got the value, want exactly 1", wins.Load())
			}
		}
	})
}

// fakeClock replaces the package clock for the test.
func fakeClock(t *testing.T) func(time.Duration) {
	clock := time.Now()
	var mu sync.Mutex
	now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	t.Cleanup(func() { now = time.Now })
	return func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
}

func TestMemoryStore(t *testing.T) {
	advance := fakeClock(t)
	s := &MemoryStore{mem: newMemory(1000, zaptest.NewLogger(t))}
	testStore(t, s, advance, 8)
}

// TestMemoryStoreBounded floods the memory store and checks that it keeps
// at most max_entries per kind, drops the oldest, leaves the other kind
// alone, and says so in a rate-limited log line.
func TestMemoryStoreBounded(t *testing.T) {
	advance := fakeClock(t)
	core, logs := observer.New(zap.WarnLevel)
	m := newMemory(3, zap.New(core))
	ctx := context.Background()
	s := &MemoryStore{mem: m}

	_ = s.Put(ctx, codeKey("c1"), []byte("c1"), time.Minute)
	for i := range 1000 {
		_ = s.Put(ctx, stateKey("https://app.example/cb", strconv.Itoa(i)), []byte{1}, time.Minute)
	}
	if n := m.len(kindState); n != 3 {
		t.Errorf("%d pending records kept, want 3", n)
	}
	for i := 997; i < 1000; i++ {
		if v, _ := s.Take(ctx, stateKey("https://app.example/cb", strconv.Itoa(i))); v == nil {
			t.Errorf("the newest record %d was dropped", i)
		}
	}
	if v, _ := s.Take(ctx, stateKey("https://app.example/cb", "0")); v != nil {
		t.Error("the oldest record was kept")
	}
	if v, _ := s.Take(ctx, codeKey("c1")); string(v) != "c1" {
		t.Error("a flood of pending requests dropped a code binding")
	}
	lines := logs.FilterMessageSnippet("memory store is full").All()
	if len(lines) != 1 || lines[0].ContextMap()["kind"] != kindState {
		t.Fatalf("got %d eviction log lines %v, want 1 (rate-limited)", len(lines), lines)
	}
	advance(evictionLogInterval)
	for i := range 5 {
		_ = s.Put(ctx, stateKey("x", strconv.Itoa(i)), []byte{1}, time.Hour)
	}
	lines = logs.FilterMessageSnippet("memory store is full").All()
	// The second line comes with the first write after the interval and
	// counts the drops since the first line.
	if len(lines) != 2 || lines[1].ContextMap()["dropped"] != int64(1000-3-1) {
		t.Errorf("after a minute: %d lines, last %v; want a second line counting the drops since the first",
			len(lines), lines[len(lines)-1].ContextMap())
	}
}

// TestMemoryStoreSharedAcrossReloads checks that a reloaded config keeps
// the records of the old one.
func TestMemoryStoreSharedAcrossReloads(t *testing.T) {
	ctx1, cancel1 := caddy.NewContext(caddy.Context{Context: context.Background()})
	old := &MemoryStore{MaxEntries: 7}
	if err := old.Provision(ctx1); err != nil {
		t.Fatal(err)
	}
	_ = old.Put(context.Background(), codeKey("c"), []byte("v"), time.Minute)
	ctx2, cancel2 := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel2()
	reloaded := &MemoryStore{MaxEntries: 7}
	if err := reloaded.Provision(ctx2); err != nil {
		t.Fatal(err)
	}
	defer reloaded.Cleanup()
	cancel1() // the old config is cleaned up after the new one started
	_ = old.Cleanup()
	if v, _ := reloaded.Take(context.Background(), codeKey("c")); string(v) != "v" {
		t.Error("the reloaded config lost the binding")
	}
}

func TestStorageStore(t *testing.T) {
	advance := fakeClock(t)
	s := &StorageStore{Prefix: "pkce_guard/bindings", storage: &certmagic.FileStorage{Path: t.TempDir()}, logger: zaptest.NewLogger(t)}
	// File storage locks poll once a second, so keep the race small.
	testStore(t, s, advance, 2)
}

// TestStorageStoreSweep checks that expired records are deleted from
// storage and live ones kept.
func TestStorageStoreSweep(t *testing.T) {
	advance := fakeClock(t)
	fs := &certmagic.FileStorage{Path: t.TempDir()}
	s := &StorageStore{Prefix: "pkce_guard/bindings", storage: fs, logger: zaptest.NewLogger(t)}
	ctx := context.Background()
	_ = s.Put(ctx, codeKey("old"), []byte("o"), time.Minute)
	_ = s.Put(ctx, stateKey("t", "old"), []byte("o"), time.Minute)
	advance(2 * time.Minute)
	_ = s.Put(ctx, codeKey("new"), []byte("n"), time.Minute)
	_ = fs.Store(ctx, "pkce_guard/bindings/other/file", []byte("not ours"))
	if n := s.sweep(ctx); n != 2 {
		t.Errorf("sweep deleted %d records, want 2", n)
	}
	if !fs.Exists(ctx, s.path(codeKey("new"))) || fs.Exists(ctx, s.path(codeKey("old"))) {
		t.Error("sweep deleted the wrong records")
	}
	if !fs.Exists(ctx, "pkce_guard/bindings/other/file") {
		t.Error("sweep deleted a key that is not a record")
	}
}

func TestRedisStore(t *testing.T) {
	addr, password := startRedis(t)
	t.Setenv("PKCE_GUARD_TEST_REDIS_PASSWORD", password)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	s := &RedisStore{Addresses: []string{addr}, Password: "{env.PKCE_GUARD_TEST_REDIS_PASSWORD}", KeyPrefix: "test:"}
	if err := s.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Cleanup()
	testStore(t, s, time.Sleep, 8)

	// Keys carry the prefix and expire in Redis itself.
	_ = s.Put(context.Background(), codeKey("x"), []byte("v"), time.Minute)
	rdb := redis.NewClient(&redis.Options{Addr: addr, Password: password})
	defer rdb.Close()
	if ttl := rdb.PTTL(context.Background(), "test:"+codeKey("x")).Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("PTTL of a record = %v, want a TTL of at most a minute", ttl)
	}
}

// TestRedisStoreDown checks that an unreachable Redis is an error (the guard
// then fails closed), returned within the timeout.
func TestRedisStoreDown(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	s := &RedisStore{Addresses: []string{fmt.Sprintf("127.0.0.1:%d", freePort(t))}, Timeout: caddy.Duration(500 * time.Millisecond)}
	if err := s.Provision(ctx); err != nil {
		t.Fatalf("Provision must not connect: %v", err)
	}
	defer s.Cleanup()
	start := time.Now()
	if _, err := s.Take(context.Background(), codeKey("x")); err == nil {
		t.Error("Take from a Redis that is down succeeded")
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("Take took %v", time.Since(start))
	}
}

// startRedis starts a redis-server with a password on a free port for the
// test and returns its address and password. It skips the test only when
// redis-server is not installed.
func startRedis(t *testing.T) (addr, password string) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if _, statErr := os.Stat("/usr/bin/redis-server"); statErr != nil {
			t.Skip("redis-server is not installed; install it (apt-get install redis-server) to run the Redis store tests")
		}
		bin = "/usr/bin/redis-server"
	}
	port := freePort(t)
	password = "pw-" + randomString()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--requirepass", password)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	rdb := redis.NewClient(&redis.Options{Addr: addr, Password: password})
	defer rdb.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if rdb.Ping(context.Background()).Err() == nil {
			return addr, password
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not start: %s", strings.TrimSpace(out.String()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
