package pkceguard

import (
	"strings"
	"testing"
)

// The example of RFC 7636 Appendix B.
const (
	rfcVerifier  = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	rfcChallenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
)

func defaultGuard() *Guard {
	return &Guard{Methods: []string{methodS256}, MinVerifierLength: minVerifierLength, MaxVerifierLength: maxVerifierLength}
}

func TestVerifierMatches(t *testing.T) {
	d := challengeDigest(rfcChallenge)
	if !verifierMatches(methodS256, rfcVerifier, d) {
		t.Error("the RFC 7636 Appendix B verifier does not match its challenge")
	}
	if verifierMatches(methodS256, rfcVerifier[:42]+"Y", d) {
		t.Error("a different verifier matches")
	}
	if verifierMatches(methodPlain, rfcVerifier, d) {
		t.Error("the S256 challenge matches its verifier as plain")
	}
	if !verifierMatches(methodPlain, rfcVerifier, challengeDigest(rfcVerifier)) {
		t.Error("plain: the verifier does not match itself")
	}
	if verifierMatches("S512", rfcVerifier, d) {
		t.Error("an unknown method matches")
	}
}

func TestValidChallenge(t *testing.T) {
	g := defaultGuard()
	for _, tc := range []struct {
		method, challenge string
		want              bool
	}{
		{methodS256, rfcChallenge, true},
		{methodS256, rfcChallenge[:42], false},
		{methodS256, rfcChallenge + "A", false},
		{methodS256, strings.Replace(rfcChallenge, "-", "+", 1), false},
		{methodS256, rfcChallenge[:42] + "=", false},
		{methodS256, rfcChallenge[:42] + "N", false}, // non-zero trailing bits
		{methodS256, "", false},
		{methodPlain, rfcVerifier, true},
		{methodPlain, strings.Repeat("a", 128), true},
		{methodPlain, strings.Repeat("a", 129), false},
		{methodPlain, strings.Repeat("a", 42), false},
		{methodPlain, strings.Repeat("a", 42) + "/", false},
		{methodPlain, strings.Repeat("~._-", 11), true},
		{"s256", rfcChallenge, false},
	} {
		if got := g.validChallenge(tc.method, tc.challenge); got != tc.want {
			t.Errorf("validChallenge(%s, %q) = %v, want %v", tc.method, tc.challenge, got, tc.want)
		}
	}
	g.MinVerifierLength = 64
	if g.validVerifier(rfcVerifier) {
		t.Error("a 43-character verifier passes min_verifier_length 64")
	}
}
