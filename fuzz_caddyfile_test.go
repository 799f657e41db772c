package pkceauth

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzCaddyfile feeds arbitrary text as the body of a pkce_auth block. The
// parser must never panic, and whatever it accepts must encode to JSON that
// decodes back to the same configuration.
func FuzzCaddyfile(f *testing.F) {
	for _, tc := range caddyfileCases {
		f.Add(blockBody(tc.input))
	}
	for _, tc := range caddyfileErrors {
		f.Add(blockBody(tc.input))
	}
	f.Add("issuer {env.X}\n}\n{")
	f.Add("header X-A a\nheader x-a b")
	f.Add("idle_timeout off\nidle_timeout -1s")
	f.Add("max_pending_logins 99999999999999999999")
	f.Add("timeout 1d2h3m")
	f.Add("{\n}\n}")

	f.Fuzz(func(t *testing.T, body string) {
		input := "pkce_auth {\n" + body + "\n}\n"
		// caddyfile.NewTestDispenser calls log.Fatalf when the lexer
		// fails (an unterminated heredoc, say), which would end the fuzz
		// run; tokenizing the same way and skipping lexer errors keeps
		// the target on the parser.
		tokens, err := caddyfile.Tokenize([]byte(input), "Testfile")
		if err != nil {
			t.Skip()
		}
		var p PKCEAuth
		if err := p.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
			return
		}
		out, err := json.Marshal(&p)
		if err != nil {
			t.Fatalf("accepted config does not encode to JSON: %v", err)
		}
		var back PKCEAuth
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("JSON %s does not decode: %v", out, err)
		}
		again, err := json.Marshal(&back)
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != string(out) {
			t.Fatalf("JSON does not round-trip:\n%s\n%s", out, again)
		}
	})
}

// blockBody returns what is between the outermost braces of a pkce_auth
// test input, or "" when there is no block.
func blockBody(input string) string {
	start := strings.Index(input, "{")
	end := strings.LastIndex(input, "}")
	if start < 0 || end <= start {
		return ""
	}
	return input[start+1 : end]
}
