package pkceauth

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// identityVar marks a request whose {http.auth.user.*} placeholders a
// pkce_auth handler has already answered.
const identityVar = "pkce_auth.identity"

// exposeIdentity makes a (nil: nobody) the request's {http.auth.user.*}
// placeholders. The first pkce_auth handler of a request registers one
// lookup function (setting each value instead costs about 16 allocations
// per request). A later one on the same request (handlers in nested
// routes) must win over it, but the Replacer asks mapped functions in the
// order they were added; so it sets its values as static ones, which the
// Replacer consults before any mapped function.
func exposeIdentity(r *http.Request, a *activeSession) {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return
	}
	vars, _ := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	if _, done := vars[identityVar]; !done {
		if vars != nil {
			vars[identityVar] = true
		}
		if a == nil {
			repl.Map(anonymousPlaceholder)
		} else {
			repl.Map(a.placeholder)
		}
		return
	}
	for _, k := range overriddenPlaceholders {
		repl.Set(k, "")
	}
	if a != nil {
		for _, kv := range a.placeholders {
			repl.Set(kv[0], kv[1])
		}
	}
}

// overriddenPlaceholders are emptied before a later handler sets its own,
// so that nothing of an earlier handler's identity shows through.
var overriddenPlaceholders = []string{
	"http.auth.user.id", "http.auth.user.email", "http.auth.user.email_verified",
	"http.auth.user.name", "http.auth.user.preferred_username", "http.auth.user.groups",
	"http.auth.user.provider",
}
