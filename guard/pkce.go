package pkceguard

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
)

// validChallenge reports whether challenge is well formed for method: for
// S256 the unpadded base64url encoding of a SHA-256 digest (43 characters,
// RFC 7636 §4.2), for plain a verifier of the configured length.
func (g *Guard) validChallenge(method, challenge string) bool {
	switch method {
	case methodS256:
		if len(challenge) != s256ChallengeLength {
			return false
		}
		// Strict decoding also rejects non-zero trailing bits, so each
		// digest has exactly one accepted encoding.
		sum, err := base64.RawURLEncoding.Strict().DecodeString(challenge)
		return err == nil && len(sum) == sha256.Size
	case methodPlain:
		return g.validVerifier(challenge)
	}
	return false
}

// validVerifier reports whether v is a code_verifier of the configured length
// made of unreserved characters (RFC 7636 §4.1).
func (g *Guard) validVerifier(v string) bool {
	if len(v) < g.MinVerifierLength || len(v) > g.MaxVerifierLength {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

// challengeDigest is what a binding keeps of a code challenge: its SHA-256,
// so a store never holds the challenge, which for plain is the verifier.
func challengeDigest(challenge string) []byte {
	sum := sha256.Sum256([]byte(challenge))
	return sum[:]
}

// verifierMatches reports in constant time whether verifier transformed by
// method (RFC 7636 §4.6) gives the challenge whose digest is want.
func verifierMatches(method, verifier string, want []byte) bool {
	var challenge string
	switch method {
	case methodS256:
		sum := sha256.Sum256([]byte(verifier))
		challenge = base64.RawURLEncoding.EncodeToString(sum[:])
	case methodPlain:
		challenge = verifier
	default:
		return false
	}
	return subtle.ConstantTimeCompare(challengeDigest(challenge), want) == 1
}

// The length of an S256 code challenge: 32 bytes in unpadded base64url.
const s256ChallengeLength = 43
