package pkceguard

import (
	"path"
	"strings"
)

// normalizePath reduces a request path to the form the configured paths are
// compared with, so that a variant the upstream server routes to its
// authorization or token endpoint cannot slip past the guard: lower case
// (servers differ in case sensitivity), backslashes as slashes, `;params`
// cut from every segment (JAX-RS servers such as Keycloak ignore matrix
// parameters), dot segments resolved, repeated and trailing slashes dropped.
// Over-matching only makes the guard look at more requests; it never lets
// one through.
func normalizePath(p string) string {
	p = strings.ToLower(strings.ReplaceAll(p, `\`, "/"))
	if strings.Contains(p, ";") {
		segs := strings.Split(p, "/")
		for i, s := range segs {
			if before, _, ok := strings.Cut(s, ";"); ok {
				segs[i] = before
			}
		}
		p = strings.Join(segs, "/")
	}
	p = path.Clean("/" + p)
	return p
}

// compilePatterns normalizes configured path patterns like request paths,
// keeping their `*` wildcards.
func compilePatterns(patterns []string) []string {
	out := make([]string, 0, len(patterns))
	for _, p := range patterns {
		p = strings.ToLower(p)
		if len(p) > 1 {
			p = strings.TrimRight(p, "/")
		}
		out = append(out, p)
	}
	return out
}

// matchAny reports whether the normalized path p matches one of patterns.
func matchAny(patterns []string, p string) bool {
	for _, pat := range patterns {
		if wildcardMatch(pat, p) {
			return true
		}
	}
	return false
}

// wildcardMatch reports whether s matches pattern, in which `*` stands for
// any run of characters, `/` included.
func wildcardMatch(pattern, s string) bool {
	// Iterative matching with one backtrack point: linear in practice,
	// quadratic at worst, never exponential.
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(pattern) && pattern[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(pattern) && pattern[pi] == s[si]:
			pi++
			si++
		case star >= 0:
			mark++
			si = mark
			pi = star + 1
		default:
			return false
		}
	}
	for pi < len(pattern) && pattern[pi] == '*' {
		pi++
	}
	return pi == len(pattern)
}
