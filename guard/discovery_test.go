package pkceguard

import "testing"

func TestAdvertiseMethods(t *testing.T) {
	for _, tc := range []struct {
		doc, want string
		err       bool
	}{
		{`{"issuer":"https://x","code_challenge_methods_supported":["plain","S256"]}`,
			`{"code_challenge_methods_supported":["S256"],"issuer":"https://x"}`, false},
		{`{"issuer":"https://x","nested":{"a":[1,2]}}`,
			`{"code_challenge_methods_supported":["S256"],"issuer":"https://x","nested":{"a":[1,2]}}`, false},
		{`{}`, `{"code_challenge_methods_supported":["S256"]}`, false},
		{`null`, "", true},
		{`[1]`, "", true},
		{`{"a":`, "", true},
	} {
		got, err := advertiseMethods([]byte(tc.doc), []string{"S256"})
		if (err != nil) != tc.err || string(got) != tc.want {
			t.Errorf("advertiseMethods(%s) = %s, %v; want %s", tc.doc, got, err, tc.want)
		}
	}
}
