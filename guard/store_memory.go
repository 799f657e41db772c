package pkceguard

import (
	"container/list"
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func init() {
	caddy.RegisterModule(MemoryStore{})
}

// MemoryStore keeps bindings in this Caddy instance's memory, the default.
// It survives config reloads but not restarts, and is not shared with other
// instances: behind a load balancer use the redis or storage store.
//
// Memory stays bounded under a flood of authorization requests: each kind
// of record (pending requests, issued codes) holds at most max_entries;
// when full, the oldest record of that kind is dropped and a warning is
// logged (at most once a minute). Pending requests are also remembered in
// the browser's cookie, so a dropped one costs nothing when the cookie
// comes back.
type MemoryStore struct {
	// The most records of each kind (pending authorization requests,
	// issued codes) kept. Default: 100000.
	MaxEntries int `json:"max_entries,omitempty"`

	mem     *memory
	poolKey string
}

// CaddyModule returns the Caddy module information.
func (MemoryStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.pkce_guard.stores.memory",
		New: func() caddy.Module { return new(MemoryStore) },
	}
}

// memoryPool holds the memories across config reloads, one per size.
var memoryPool = caddy.NewUsagePool()

// Provision sets the default size and gets the shared memory.
func (s *MemoryStore) Provision(ctx caddy.Context) error {
	if s.MaxEntries == 0 {
		s.MaxEntries = defaultMaxEntries
	}
	if s.MaxEntries < 0 {
		return fmt.Errorf("pkce_guard memory store: max_entries %d must be positive", s.MaxEntries)
	}
	logger := ctx.Logger()
	s.poolKey = "max_entries=" + strconv.Itoa(s.MaxEntries)
	val, _, err := memoryPool.LoadOrNew(s.poolKey, func() (caddy.Destructor, error) {
		return newMemory(s.MaxEntries, logger), nil
	})
	if err != nil {
		return err
	}
	s.mem = val.(*memory)
	return nil
}

// Cleanup releases the shared memory.
func (s *MemoryStore) Cleanup() error {
	if s.poolKey != "" {
		_, err := memoryPool.Delete(s.poolKey)
		return err
	}
	return nil
}

// Put implements Store.
func (s *MemoryStore) Put(_ context.Context, key string, value []byte, ttl time.Duration) error {
	s.mem.put(key, value, ttl, false)
	return nil
}

// Add implements Store.
func (s *MemoryStore) Add(_ context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	return s.mem.put(key, value, ttl, true), nil
}

// Take implements Store.
func (s *MemoryStore) Take(_ context.Context, key string) ([]byte, error) {
	return s.mem.take(key), nil
}

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	store memory {
//	    max_entries <n>
//	}
func (s *MemoryStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume store name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "max_entries":
			if s.MaxEntries != 0 {
				return d.Err("max_entries may be given only once")
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n <= 0 {
				return d.Errf("max_entries must be a positive number, not %q", d.Val())
			}
			s.MaxEntries = n
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized subdirective %s", d.Val())
		}
	}
	return nil
}

// memory is a bounded map per record kind, dropping the oldest record when
// full. Records go in at the back of a list, so the front is the oldest.
type memory struct {
	mu      sync.Mutex
	max     int
	kinds   map[string]*memoryKind
	logger  *zap.Logger
	lastLog time.Time
	evicted map[string]int // since the last log line, by kind
}

type memoryKind struct {
	items map[string]*list.Element
	order *list.List // of *memoryEntry, oldest first
}

type memoryEntry struct {
	key     string
	value   []byte
	expires time.Time
}

func newMemory(max int, logger *zap.Logger) *memory {
	return &memory{max: max, kinds: map[string]*memoryKind{}, logger: logger, evicted: map[string]int{}}
}

// Destruct implements caddy.Destructor.
func (m *memory) Destruct() error { return nil }

// put stores value under key; with onlyIfAbsent, only when key holds no
// live value. It reports whether it stored.
func (m *memory) put(key string, value []byte, ttl time.Duration, onlyIfAbsent bool) bool {
	t := now()
	kind := keyKind(key)
	m.mu.Lock()
	defer m.mu.Unlock()
	k := m.kinds[kind]
	if k == nil {
		k = &memoryKind{items: map[string]*list.Element{}, order: list.New()}
		m.kinds[kind] = k
	}
	if el, ok := k.items[key]; ok {
		if onlyIfAbsent && t.Before(el.Value.(*memoryEntry).expires) {
			return false
		}
		k.order.Remove(el)
		delete(k.items, key)
	}
	// Expired records are mostly at the front; drop them first.
	for el := k.order.Front(); el != nil && !t.Before(el.Value.(*memoryEntry).expires); el = k.order.Front() {
		k.order.Remove(el)
		delete(k.items, el.Value.(*memoryEntry).key)
	}
	for len(k.items) >= m.max {
		el := k.order.Front()
		k.order.Remove(el)
		delete(k.items, el.Value.(*memoryEntry).key)
		m.evicted[kind]++
	}
	k.items[key] = k.order.PushBack(&memoryEntry{key: key, value: value, expires: t.Add(ttl)})
	if len(m.evicted) > 0 && t.Sub(m.lastLog) >= evictionLogInterval {
		m.lastLog = t
		for kind, n := range m.evicted {
			if c := m.logger.Check(zapcore.WarnLevel, "pkce_guard memory store is full; dropped the oldest records (a flood of authorization requests?)"); c != nil {
				c.Write(zap.String("kind", kind), zap.Int("dropped", n), zap.Int("max_entries", m.max))
			}
		}
		clear(m.evicted)
	}
	return true
}

// take removes and returns the live value under key, or nil.
func (m *memory) take(key string) []byte {
	t := now()
	m.mu.Lock()
	defer m.mu.Unlock()
	k := m.kinds[keyKind(key)]
	if k == nil {
		return nil
	}
	el, ok := k.items[key]
	if !ok {
		return nil
	}
	k.order.Remove(el)
	delete(k.items, key)
	e := el.Value.(*memoryEntry)
	if !t.Before(e.expires) {
		return nil
	}
	return e.value
}

// len returns the number of records of kind, live or not yet dropped.
func (m *memory) len(kind string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k := m.kinds[kind]; k != nil {
		return len(k.items)
	}
	return 0
}

const (
	defaultMaxEntries   = 100_000
	evictionLogInterval = time.Minute
)

// Interface guards
var (
	_ Store                 = (*MemoryStore)(nil)
	_ caddy.Provisioner     = (*MemoryStore)(nil)
	_ caddy.CleanerUpper    = (*MemoryStore)(nil)
	_ caddyfile.Unmarshaler = (*MemoryStore)(nil)
)
