package seal

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzOpen feeds Open untrusted input, as it gets from cookies: it must
// never panic, must fail only with ErrInvalid, and whatever it opens must
// seal and open again to the same plaintext.
func FuzzOpen(f *testing.F) {
	k := mustKeyring(f, "session", secret(1), secret(2))
	old := mustKeyring(f, "session", secret(2))
	const name = "__Host-session"

	valid := k.Seal(name, []byte(`{"sub":"alice","exp":1700000000}`))
	for _, seed := range []struct{ name, sealed string }{
		{name, valid},
		{name, k.Seal(name, nil)},
		{"", k.Seal("", []byte("x"))},
		{name, old.Seal(name, []byte("sealed by the old key"))},
		{name, k.Seal(name, bytes.Repeat([]byte{0xff}, 300))},
		{"other", valid},
		{name, valid[:len(valid)-1]},
		{name, valid + "A"},
		{name, valid[:20] + "\n" + valid[20:]},
		{name, "A" + valid[1:]},
		{name, ""},
		{name, "!!!!"},
		{name, strings.Repeat("A", minEncodedLen)},
		{name, strings.Repeat("_", minEncodedLen+1)},
		{name, valid + "=="},
	} {
		f.Add(seed.name, seed.sealed)
	}
	f.Fuzz(func(t *testing.T, name, sealed string) {
		plaintext, err := k.Open(name, sealed)
		if err != nil {
			if err != ErrInvalid {
				t.Fatalf("Open error %v, want ErrInvalid", err)
			}
			if plaintext != nil {
				t.Fatalf("Open returned %q with an error", plaintext)
			}
			return
		}
		if len(sealed) > maxEncodedLen {
			t.Fatalf("Open accepted %d characters, more than %d", len(sealed), maxEncodedLen)
		}
		again, err := k.Open(name, k.Seal(name, plaintext))
		if err != nil {
			t.Fatalf("re-sealed value does not open: %v", err)
		}
		if !bytes.Equal(again, plaintext) {
			t.Fatalf("re-sealed value opens to %q, want %q", again, plaintext)
		}
	})
}

// FuzzRoundTrip checks that any plaintext sealed for any name opens to
// itself under that name only, with the documented length.
func FuzzRoundTrip(f *testing.F) {
	k := mustKeyring(f, "session", secret(1), secret(2))
	f.Add("__Host-session", []byte(`{"sub":"alice"}`))
	f.Add("", []byte{})
	f.Add("c", []byte{0})
	f.Add("name\x00with\nbytes", bytes.Repeat([]byte{0xff}, 1000))
	f.Fuzz(func(t *testing.T, name string, plaintext []byte) {
		sealed := k.Seal(name, plaintext)
		if want := minEncodedLen + (4*len(plaintext)+2)/3; len(sealed) != want {
			t.Fatalf("sealed length %d, want %d", len(sealed), want)
		}
		got, err := k.Open(name, sealed)
		if len(sealed) > maxEncodedLen {
			if err != ErrInvalid {
				t.Fatalf("Open of %d characters = %v, want ErrInvalid", len(sealed), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !bytes.Equal(got, plaintext) {
			t.Fatalf("Open = %q, want %q", got, plaintext)
		}
		if _, err := k.Open(name+"x", sealed); err != ErrInvalid {
			t.Fatalf("Open under another name = %v, want ErrInvalid", err)
		}
	})
}
