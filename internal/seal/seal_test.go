package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"testing"
)

// secret returns a valid 32-byte secret, different for each n.
func secret(n byte) []byte {
	s := bytes.Repeat([]byte{n}, MinSecretLen)
	copy(s, "test-secret-")
	return s
}

func mustKeyring(t testing.TB, purpose string, secrets ...[]byte) *Keyring {
	t.Helper()
	k, err := NewKeyring(secrets, purpose)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return k
}

// decode and encode give tests the raw wire bytes of a sealed value.
func decode(t testing.TB, s string) []byte {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("decoding %q: %v", s, err)
	}
	return raw
}

func encode(raw []byte) string { return base64.RawURLEncoding.EncodeToString(raw) }

// collidingSecrets are two different secrets whose "session" keys share a
// key id, found by a birthday search.
func collidingSecrets() (a, b []byte) {
	gen := func(i uint64) []byte {
		s := []byte("collision-test-secret-----------")
		binary.BigEndian.PutUint64(s[24:], i)
		return s
	}
	return gen(63312), gen(110087)
}

func TestNewKeyring(t *testing.T) {
	collideA, collideB := collidingSecrets()
	tests := []struct {
		name     string
		secrets  [][]byte
		purpose  string
		wantErr  string // substring; "" means success
		wantKeys int
	}{
		{name: "one secret", secrets: [][]byte{secret(1)}, purpose: "session", wantKeys: 1},
		{name: "two secrets", secrets: [][]byte{secret(1), secret(2)}, purpose: "session", wantKeys: 2},
		{name: "long secret", secrets: [][]byte{bytes.Repeat([]byte("x"), 100)}, purpose: "session", wantKeys: 1},
		{name: "repeated secret kept once", secrets: [][]byte{secret(1), secret(2), secret(1)}, purpose: "session", wantKeys: 2},
		{name: "nil secrets", secrets: nil, purpose: "session", wantErr: "at least one secret"},
		{name: "empty secrets", secrets: [][]byte{}, purpose: "session", wantErr: "at least one secret"},
		{name: "secret too short", secrets: [][]byte{secret(1)[:31]}, purpose: "session", wantErr: "secret 0 is 31 bytes"},
		{name: "empty secret", secrets: [][]byte{{}}, purpose: "session", wantErr: "secret 0 is 0 bytes"},
		{name: "second secret too short", secrets: [][]byte{secret(1), []byte("short")}, purpose: "session", wantErr: "secret 1 is 5 bytes"},
		{name: "empty purpose", secrets: [][]byte{secret(1)}, purpose: "", wantErr: "purpose is required"},
		{name: "key id collision", secrets: [][]byte{secret(1), collideA, collideB}, purpose: "session", wantErr: "secrets 1 and 2 derive keys with the same key id"},
		{name: "key id collision after a repeat", secrets: [][]byte{secret(1), secret(1), collideA, collideB}, purpose: "session", wantErr: "secrets 2 and 3 derive"},
		{name: "colliding secrets for another purpose", secrets: [][]byte{collideA, collideB}, purpose: "transaction", wantKeys: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := NewKeyring(tt.secrets, tt.purpose)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if k != nil {
					t.Errorf("got a Keyring with the error")
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if len(k.keys) != tt.wantKeys {
				t.Errorf("%d keys, want %d", len(k.keys), tt.wantKeys)
			}
		})
	}
}

// TestNewKeyringKeepsNoSecret checks the Keyring does not depend on the
// caller's secret slices, which a caller may wipe after use.
func TestNewKeyringKeepsNoSecret(t *testing.T) {
	s := secret(1)
	k := mustKeyring(t, "session", s)
	sealed := k.Seal("c", []byte("v"))
	clear(s)
	if got, err := k.Open("c", sealed); err != nil || string(got) != "v" {
		t.Fatalf("after wiping the secret: Open = %q, %v", got, err)
	}
	if got, err := mustKeyring(t, "session", secret(1)).Open("c", k.Seal("c", []byte("w"))); err != nil || string(got) != "w" {
		t.Fatalf("after wiping the secret, Seal used another key: Open = %q, %v", got, err)
	}
}

// TestWireFormat opens a value with an independent implementation of the
// documented format, so the salt, info, key id and layout cannot drift and
// break sessions shared between instances or versions.
func TestWireFormat(t *testing.T) {
	const purpose, name, plaintext = "session", "__Host-pkce", "hello, world"
	sec := secret(7)
	sealed := mustKeyring(t, purpose, sec).Seal(name, []byte(plaintext))

	key, err := hkdf.Key(sha256.New, sec, []byte("caddy-pkce/v1"), purpose, 32)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(key)
	raw := decode(t, sealed)
	if len(raw) != 1+4+12+len(plaintext)+16 {
		t.Fatalf("decoded length %d, want %d", len(raw), 1+4+12+len(plaintext)+16)
	}
	if raw[0] != 1 {
		t.Errorf("version byte %d, want 1", raw[0])
	}
	if !bytes.Equal(raw[1:5], sum[:4]) {
		t.Errorf("key id %x, want %x", raw[1:5], sum[:4])
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	got, err := aead.Open(nil, raw[5:17], raw[17:], []byte(name))
	if err != nil {
		t.Fatalf("independent open: %v", err)
	}
	if string(got) != plaintext {
		t.Errorf("independent open = %q, want %q", got, plaintext)
	}
	if want := 44 + (4*len(plaintext)+2)/3; len(sealed) != want {
		t.Errorf("encoded length %d, want %d as documented", len(sealed), want)
	}
}

func TestOpen(t *testing.T) {
	session := mustKeyring(t, "session", secret(1))
	otherPurpose := mustKeyring(t, "transaction", secret(1))
	otherSecret := mustKeyring(t, "session", secret(2))

	const name = "__Host-session"
	payload := bytes.Repeat([]byte("0123456789"), 30)
	valid := session.Seal(name, payload)
	// 5 bytes of plaintext make 38 raw bytes: not a multiple of 3, so
	// the encoding has padding to drop and 2 trailing bits that must be 0.
	short := session.Seal(name, []byte("hello"))
	rawShort := decode(t, short)

	// A value sealed for the longest plaintext Open accepts, and one byte more.
	maxPlain := (maxEncodedLen - minEncodedLen) * 3 / 4
	largest := session.Seal(name, bytes.Repeat([]byte("a"), maxPlain))
	tooLarge := session.Seal(name, bytes.Repeat([]byte("a"), maxPlain+1))

	// A genuine value ending in a zero byte, encoded without that byte and
	// with a line break instead: the decoder skips the line break and the
	// zero-filled buffer supplies the byte, so only the decoded length
	// shows the value was re-encoded.
	var zeroEnded string
	for zeroEnded == "" {
		raw := decode(t, session.Seal(name, []byte("hi")))
		if raw[len(raw)-1] == 0 {
			zeroEnded = encode(raw[:len(raw)-1]) + "\n"
		}
	}

	withRaw := func(f func(raw []byte)) string {
		raw := decode(t, short)
		f(raw)
		return encode(raw)
	}

	tests := []struct {
		name    string
		keyring *Keyring
		cookie  string // the name to open under
		sealed  string
		want    []byte // nil means ErrInvalid
	}{
		{name: "round trip", keyring: session, cookie: name, sealed: valid, want: payload},
		{name: "round trip short", keyring: session, cookie: name, sealed: short, want: []byte("hello")},
		{name: "round trip empty plaintext", keyring: session, cookie: name, sealed: session.Seal(name, nil), want: []byte{}},
		{name: "round trip empty name", keyring: session, cookie: "", sealed: session.Seal("", []byte("x")), want: []byte("x")},
		{name: "largest accepted", keyring: session, cookie: name, sealed: largest, want: bytes.Repeat([]byte("a"), maxPlain)},

		{name: "different name", keyring: session, cookie: "__Host-other", sealed: valid},
		{name: "name with a suffix", keyring: session, cookie: name + "x", sealed: valid},
		{name: "empty name", keyring: session, cookie: "", sealed: valid},
		{name: "other purpose", keyring: otherPurpose, cookie: name, sealed: valid},
		{name: "other secret", keyring: otherSecret, cookie: name, sealed: valid},
		{name: "truncated by one character", keyring: session, cookie: name, sealed: valid[:len(valid)-1]},
		{name: "truncated by one byte", keyring: session, cookie: name, sealed: encode(decode(t, valid)[:len(decode(t, valid))-1])},
		{name: "truncated to the header", keyring: session, cookie: name, sealed: encode(rawShort[:headerSize])},
		{name: "one byte below minimum", keyring: session, cookie: name, sealed: encode(rawShort[:headerSize+tagSize-1])},
		{name: "header and tag without ciphertext", keyring: session, cookie: name, sealed: encode(append(bytes.Clone(rawShort[:headerSize]), rawShort[len(rawShort)-tagSize:]...))},
		{name: "empty", keyring: session, cookie: name, sealed: ""},
		{name: "garbage base64", keyring: session, cookie: name, sealed: strings.Repeat("!*", 40)},
		{name: "standard alphabet", keyring: session, cookie: name, sealed: base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb, 0xff}, 30))},
		{name: "padded", keyring: session, cookie: name, sealed: base64.URLEncoding.EncodeToString(rawShort)},
		{name: "non-zero trailing bits", keyring: session, cookie: name, sealed: short[:len(short)-1] + string(nextBase64Char(short[len(short)-1]))},
		{name: "line break inside", keyring: session, cookie: name, sealed: short[:20] + "\n" + short[20:]},
		{name: "line break in a value of whole quanta", keyring: session, cookie: name, sealed: func() string { s := session.Seal(name, []byte("abc")); return s[:10] + "\n" + s[10:] }()},
		{name: "line break standing in for a zero byte", keyring: session, cookie: name, sealed: zeroEnded},
		{name: "carriage return at end", keyring: session, cookie: name, sealed: short + "\r"},
		{name: "appended character", keyring: session, cookie: name, sealed: valid + "A"},
		{name: "appended byte", keyring: session, cookie: name, sealed: encode(append(decode(t, valid), 0))},
		{name: "other version", keyring: session, cookie: name, sealed: withRaw(func(raw []byte) { raw[0] = 2 })},
		{name: "unknown key id", keyring: session, cookie: name, sealed: withRaw(func(raw []byte) { raw[1] ^= 0xff })},
		{name: "too long", keyring: session, cookie: name, sealed: tooLarge},
		{name: "too long garbage", keyring: session, cookie: name, sealed: strings.Repeat("A", maxEncodedLen+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.keyring.Open(tt.cookie, tt.sealed)
			if tt.want == nil {
				if err != ErrInvalid {
					t.Fatalf("Open = %q, %v; want ErrInvalid", got, err)
				}
				if got != nil {
					t.Errorf("Open returned %q with the error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("Open = %q, want %q", got, tt.want)
			}
		})
	}
}

// nextBase64Char returns the URL-alphabet character after c, which differs
// from c in its lowest bit.
func nextBase64Char(c byte) byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	return alphabet[strings.IndexByte(alphabet, c)^1]
}

// TestOpenFlippedBit flips every bit of a sealed value, in the decoded bytes
// (version, key id, nonce, ciphertext, tag) and in the encoded text.
func TestOpenFlippedBit(t *testing.T) {
	k := mustKeyring(t, "session", secret(1))
	const name = "c"
	sealed := k.Seal(name, []byte("a sealed value")) // 31 bytes: trailing bits in the encoding
	raw := decode(t, sealed)
	for i := range raw {
		for bit := range 8 {
			mod := bytes.Clone(raw)
			mod[i] ^= 1 << bit
			if got, err := k.Open(name, encode(mod)); err != ErrInvalid {
				t.Errorf("byte %d bit %d flipped: Open = %q, %v; want ErrInvalid", i, bit, got, err)
			}
		}
	}
	for i := range sealed {
		mod := []byte(sealed)
		mod[i] = nextBase64Char(mod[i])
		if got, err := k.Open(name, string(mod)); err != ErrInvalid {
			t.Errorf("character %d changed: Open = %q, %v; want ErrInvalid", i, got, err)
		}
	}
}

func TestRotation(t *testing.T) {
	oldSecret, newSecret := secret(1), secret(2)
	oldOnly := mustKeyring(t, "session", oldSecret)
	rotated := mustKeyring(t, "session", newSecret, oldSecret)
	newOnly := mustKeyring(t, "session", newSecret)

	sealedOld := oldOnly.Seal("c", []byte("old"))
	sealedNew := rotated.Seal("c", []byte("new"))

	tests := []struct {
		name    string
		keyring *Keyring
		sealed  string
		want    string // "" means ErrInvalid
	}{
		{name: "rotated opens old", keyring: rotated, sealed: sealedOld, want: "old"},
		{name: "rotated opens its own", keyring: rotated, sealed: sealedNew, want: "new"},
		{name: "rotated seals with the new key", keyring: newOnly, sealed: sealedNew, want: "new"},
		{name: "old keyring cannot open new value", keyring: oldOnly, sealed: sealedNew},
		{name: "dropped old key", keyring: newOnly, sealed: sealedOld},
		{name: "old key second after rotation back", keyring: mustKeyring(t, "session", oldSecret, newSecret), sealed: sealedNew, want: "new"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.keyring.Open("c", tt.sealed)
			if tt.want == "" {
				if err != ErrInvalid {
					t.Fatalf("Open = %q, %v; want ErrInvalid", got, err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("Open = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestSealRandomNonce(t *testing.T) {
	k := mustKeyring(t, "session", secret(1))
	a, b := k.Seal("c", []byte("same")), k.Seal("c", []byte("same"))
	if a == b {
		t.Fatalf("two Seals of the same plaintext are equal: %q", a)
	}
	ra, rb := decode(t, a), decode(t, b)
	if bytes.Equal(ra[1+idSize:headerSize], rb[1+idSize:headerSize]) {
		t.Errorf("two Seals used the same nonce %x", ra[1+idSize:headerSize])
	}
	if !bytes.Equal(ra[:1+idSize], rb[:1+idSize]) {
		t.Errorf("headers differ: %x, %x", ra[:1+idSize], rb[:1+idSize])
	}
}

// TestOpenResultIsOwned checks that appending to or changing an opened value
// affects neither the sealed string nor later opens.
func TestOpenResultIsOwned(t *testing.T) {
	k := mustKeyring(t, "session", secret(1))
	sealed := k.Seal("c", []byte("value"))
	got, err := k.Open("c", sealed)
	if err != nil {
		t.Fatal(err)
	}
	if cap(got) != len(got) {
		t.Errorf("cap %d > len %d: appending would write into Open's buffer", cap(got), len(got))
	}
	got[0] = 'X'
	if again, err := k.Open("c", sealed); err != nil || string(again) != "value" {
		t.Fatalf("second Open = %q, %v", again, err)
	}
}

func TestConcurrentUse(t *testing.T) {
	k := mustKeyring(t, "session", secret(1), secret(2))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				want := []byte{byte(g), byte(i)}
				got, err := k.Open("c", k.Seal("c", want))
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("goroutine %d: Open = %v, %v; want %v", g, got, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestErrInvalidIsTheOnlyError(t *testing.T) {
	k := mustKeyring(t, "session", secret(1))
	for _, s := range []string{"", "x", strings.Repeat("A", 44), strings.Repeat("A", maxEncodedLen+1)} {
		if _, err := k.Open("c", s); !errors.Is(err, ErrInvalid) || err.Error() != "seal: invalid or tampered value" {
			t.Errorf("Open(%.10q) error %v, want ErrInvalid", s, err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	k := mustKeyring(b, "session", secret(1), secret(2))
	payload := bytes.Repeat([]byte("x"), 300)
	sealed := k.Seal("__Host-session", payload)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Open("__Host-session", sealed); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSeal(b *testing.B) {
	k := mustKeyring(b, "session", secret(1))
	payload := bytes.Repeat([]byte("x"), 300)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		_ = k.Seal("__Host-session", payload)
	}
}
