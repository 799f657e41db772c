package pkceauth

// The pkce_guard handler lives in its own package; importing it here means
// `xcaddy build --with github.com/caddy-pkce/caddy-pkce` brings both
// handlers and their directives.
import _ "github.com/caddy-pkce/caddy-pkce/guard"
