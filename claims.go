package pkceauth

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// lookupClaim follows a dotted path such as "realm_access.roles" into the
// claims. A key that itself contains dots (e.g. Zitadel's
// "urn:zitadel:iam:org:project:roles" has none, but URL-like claim names do)
// is tried whole first, so both forms work.
func lookupClaim(claims map[string]any, path string) (any, bool) {
	if v, ok := claims[path]; ok {
		return v, true
	}
	head, rest, found := strings.Cut(path, ".")
	if !found {
		return nil, false
	}
	inner, ok := claims[head].(map[string]any)
	if !ok {
		return nil, false
	}
	return lookupClaim(inner, rest)
}

// claimStrings turns a claim into a list: arrays give their elements,
// objects their keys (sorted; Zitadel's role claims are objects), strings are
// split on commas and spaces.
func claimStrings(v any) []string {
	switch t := v.(type) {
	case nil:
		return nil
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			if s := claimString(e); s != "" {
				out = append(out, s)
			}
		}
		return out
	case map[string]any:
		out := make([]string, 0, len(t))
		for k := range t {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	case string:
		return strings.FieldsFunc(t, func(r rune) bool { return r == ',' || r == ' ' })
	default:
		if s := claimString(t); s != "" {
			return []string{s}
		}
		return nil
	}
}

// claimString renders a claim as one string: arrays are comma-joined,
// objects become compact JSON, numbers print without exponent.
func claimString(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	case bool:
		return strconv.FormatBool(t)
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	case json.Number:
		return t.String()
	case []any:
		return strings.Join(claimStrings(t), ",")
	default:
		b, err := json.Marshal(t)
		if err != nil {
			return fmt.Sprint(t)
		}
		return string(b)
	}
}

// claimBool reads booleans that some providers send as strings
// (Cognito, Apple: "true").
func claimBool(v any) bool {
	switch t := v.(type) {
	case bool:
		return t
	case string:
		b, _ := strconv.ParseBool(t)
		return b
	}
	return false
}
