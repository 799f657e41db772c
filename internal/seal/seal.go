// Package seal encrypts and authenticates small values, such as session and
// login-transaction state, so they can be stored in cookies that any Caddy
// instance holding the same secret can read, without a server-side store.
//
// A sealed value is the unpadded base64url (RFC 4648 §5) encoding, which is
// safe in a cookie, of
//
//	version (1 byte: 1) | key id (4 bytes) | nonce (12 bytes) | ciphertext (as long as the plaintext) | GCM tag (16 bytes)
//
// The cipher is AES-256-GCM. Each key is derived from a configured secret with
// HKDF-SHA256, salted with a fixed string and with the purpose ("session",
// "transaction") as info, so the same secret gives unrelated keys for
// different purposes and a value sealed for one cannot be opened as the other.
//
// The cookie name is the GCM additional data: it is not stored, but a value
// opens only under the name it was sealed for, so a value cut from one cookie
// and pasted into another is rejected.
//
// The key id is the first 4 bytes of SHA-256 of the derived key. It lets Open
// pick the one key that can open a value instead of trying every key, which
// makes key rotation cheap: a Keyring seals with its first key and opens with
// any of its keys, so a new secret is put first and the old one kept after it
// until the values sealed with it have expired. The id reveals nothing useful
// about the key.
//
// The nonce is random. With 96-bit random nonces one key should seal no more
// than about 2^32 values; rotating the secret resets that count.
//
// Open accepts only the exact encoding Seal produces (no padding, no line
// breaks, zero trailing bits), rejects values longer than 64 KiB before
// decoding them, and reports every failure as ErrInvalid, without saying
// which check failed.
package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
)

// ErrInvalid is the one error Open returns: the value was not produced by
// Seal with a key of this Keyring for this name, or it was altered since.
var ErrInvalid = errors.New("seal: invalid or tampered value")

// Keyring seals with its first key and opens with any of them (key rotation).
// It is safe for concurrent use.
type Keyring struct {
	keys []key // keys[0] seals
}

type key struct {
	id   [idSize]byte
	aead cipher.AEAD
}

// NewKeyring derives one AES-256 key per secret with HKDF-SHA256 (salt: a
// fixed string, info: purpose), so keys for different purposes differ even
// with the same secret. The first secret seals; all of them open. It returns
// an error when there is no secret, when a secret is shorter than 32 bytes,
// or when purpose is empty. The Keyring keeps no copy of the secrets.
func NewKeyring(secrets [][]byte, purpose string) (*Keyring, error) {
	if len(secrets) == 0 {
		return nil, errors.New("seal: at least one secret is required")
	}
	if purpose == "" {
		return nil, errors.New("seal: a purpose is required, so keys for different uses differ")
	}
	k := &Keyring{keys: make([]key, 0, len(secrets))}
	// derived[j] and from[j] are the key and secret index of k.keys[j],
	// kept only to tell a repeated secret from a key id collision.
	derived := make([][]byte, 0, len(secrets))
	from := make([]int, 0, len(secrets))
	defer func() {
		for _, d := range derived {
			clear(d)
		}
	}()
secrets:
	for i, secret := range secrets {
		if len(secret) < MinSecretLen {
			return nil, fmt.Errorf("seal: secret %d is %d bytes, need at least %d random bytes", i, len(secret), MinSecretLen)
		}
		dk, err := hkdf.Key(sha256.New, secret, []byte(hkdfSalt), purpose, keySize)
		if err != nil {
			return nil, fmt.Errorf("seal: deriving key %d: %w", i, err)
		}
		id := keyID(dk)
		for j := range k.keys {
			if k.keys[j].id != id {
				continue
			}
			if bytes.Equal(derived[j], dk) {
				// The same secret listed twice: the first one serves.
				clear(dk)
				continue secrets
			}
			// Open picks the key by id, so two keys must not share one.
			// Different keys collide with a chance of 1 in 2^32.
			clear(dk)
			return nil, fmt.Errorf("seal: secrets %d and %d derive keys with the same key id; replace secret %d", from[j], i, i)
		}
		derived = append(derived, dk)
		from = append(from, i)
		block, err := aes.NewCipher(dk)
		if err != nil {
			return nil, fmt.Errorf("seal: key %d: %w", i, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("seal: key %d: %w", i, err)
		}
		k.keys = append(k.keys, key{id: id, aead: aead})
	}
	return k, nil
}

// keyID names a derived key on the wire without revealing it.
func keyID(derived []byte) [idSize]byte {
	sum := sha256.Sum256(derived)
	return [idSize]byte(sum[:idSize])
}

// Seal encrypts plaintext bound to name (the GCM additional data, so a value
// sealed for one cookie name cannot be replayed under another) with the
// Keyring's first key and a random nonce, and returns it as unpadded
// base64url, safe in a cookie. The result is 44 + ⌈4/3 × len(plaintext)⌉
// characters long. Open rejects values longer than 64 KiB, and browsers
// keep cookies only up to about 4 KB, so callers bound what they seal.
func (k *Keyring) Seal(name string, plaintext []byte) string {
	sk := &k.keys[0]
	raw := make([]byte, headerSize, headerSize+len(plaintext)+tagSize)
	raw[0] = version
	copy(raw[1:1+idSize], sk.id[:])
	nonce := raw[1+idSize : headerSize]
	rand.Read(nonce) // never returns an error; crashes the program if the system RNG fails
	raw = sk.aead.Seal(raw, nonce, plaintext, []byte(name))
	return encoding.EncodeToString(raw)
}

// Open reverses Seal: it returns the plaintext of a value sealed for name by
// any key of the Keyring. A value that was altered, sealed for another name,
// purpose or unknown key, is not exactly what Seal produced, is too short or
// longer than 64 KiB returns ErrInvalid; Open never panics on any input.
// The returned slice is the caller's own.
func (k *Keyring) Open(name, sealed string) ([]byte, error) {
	if len(sealed) < minEncodedLen || len(sealed) > maxEncodedLen {
		return nil, ErrInvalid
	}
	n := encoding.DecodedLen(len(sealed))
	if encoding.EncodedLen(n) != len(sealed) {
		return nil, ErrInvalid // a length no unpadded encoding has
	}
	// One allocation holds the decoded value, decrypted in place, and the
	// additional data, which is then passed without a copy of its own.
	buf := make([]byte, n+len(name))
	// The decoder skips line breaks, so it then decodes fewer bytes than
	// the length promised; refusing those gives each value one encoding.
	if m, err := encoding.Decode(buf[:n], []byte(sealed)); err != nil || m != n {
		return nil, ErrInvalid
	}
	aad := buf[n:]
	copy(aad, name)
	raw := buf[:n]
	if raw[0] != version {
		return nil, ErrInvalid
	}
	var opener *key
	for i := range k.keys {
		if [idSize]byte(raw[1:1+idSize]) == k.keys[i].id {
			opener = &k.keys[i]
			break
		}
	}
	if opener == nil {
		return nil, ErrInvalid
	}
	ciphertext := raw[headerSize:]
	plaintext, err := opener.aead.Open(ciphertext[:0], raw[1+idSize:headerSize], ciphertext, aad)
	if err != nil {
		return nil, ErrInvalid
	}
	// Cap the capacity so appending to the result cannot reach into the
	// additional data behind it.
	return plaintext[:len(plaintext):len(plaintext)], nil
}

const (
	// MinSecretLen is the shortest secret NewKeyring accepts, in bytes.
	MinSecretLen = 32

	// hkdfSalt is fixed, so every instance derives the same keys from the
	// same secret; it names the format so a future format derives others.
	hkdfSalt = "caddy-pkce/v1"

	version    = 1
	idSize     = 4
	nonceSize  = 12 // the standard GCM nonce size
	tagSize    = 16 // the standard GCM tag size
	keySize    = 32 // AES-256
	headerSize = 1 + idSize + nonceSize

	// minEncodedLen is the encoding of a sealed empty plaintext.
	minEncodedLen = (8*(headerSize+tagSize) + 5) / 6
	// maxEncodedLen bounds the work Open does for untrusted input.
	maxEncodedLen = 64 << 10
)

// encoding is base64url without padding, refusing non-zero trailing bits so
// that each value has exactly one encoding.
var encoding = base64.RawURLEncoding.Strict()
