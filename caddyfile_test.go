package pkceauth

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// caddyfileCases are the parser's happy paths; the fuzz target seeds from
// them too.
var caddyfileCases = []struct {
	name  string
	input string
	want  PKCEAuth
}{
	{
		name:  "empty directive",
		input: `pkce_auth`,
		want:  PKCEAuth{},
	},
	{
		name:  "empty block",
		input: "pkce_auth {\n}",
		want:  PKCEAuth{},
	},
	{
		name: "minimal",
		input: `pkce_auth {
			issuer https://idp.example.com/realms/main
			client_id caddy
		}`,
		want: PKCEAuth{Issuer: "https://idp.example.com/realms/main", ClientID: "caddy"},
	},
	{
		name: "every subdirective",
		input: `pkce_auth {
			issuer                 https://idp.example.com/realms/main
			discovery_url          http://keycloak:8080/realms/main/.well-known/openid-configuration
			authorization_endpoint https://idp.example.com/auth
			token_endpoint         https://idp.example.com/token
			userinfo_endpoint      https://idp.example.com/userinfo
			jwks_uri               https://idp.example.com/certs
			end_session_endpoint   https://idp.example.com/logout
			client_id              caddy
			client_secret          {env.OIDC_CLIENT_SECRET}
			client_auth_method     post
			scopes                 openid email profile groups
			auth_param             prompt login
			auth_param             acr_values "urn:mace:incommon:iap:silver"
			forward_auth_params    login_hint ui_locales
			redirect_url           https://app.example.com/oauth2/callback
			response_mode          form_post
			callback_path          /auth/callback
			logout_path            /auth/logout
			post_logout_redirect   /goodbye
			session_lifetime       8h
			idle_timeout           30m
			login_timeout          5m
			max_pending_logins     3
			cookie_name            app_session
			cookie_domain          example.com
			cookie_path            /app
			cookie_same_site       strict
			cookie_secure          always
			session_keys           {file./run/secrets/key1} {file./run/secrets/key0}
			user_id_claim          preferred_username
			groups_claim           realm_access.roles
			claims                 department resource_access.app.roles
			signing_algs           RS256 ES256
			pkce_method            plain
			require_s256_discovery
			userinfo
			timeout                5s
			clock_skew             2m
			header                 X-User-Email email
			header                 X-User-Groups groups
			keep_cookies
			session {
				store redis 10.0.0.1:26379 10.0.0.2:26379 {
					username      caddy
					password      {env.REDIS_PASSWORD}
					db            2
					master_name   sessions
					sentinel_password {env.SENTINEL_PASSWORD}
					tls {
						insecure_skip_verify
						server_name redis.internal
						ca_file     /etc/redis/ca.pem
						client_cert /etc/redis/client.pem /etc/redis/client-key.pem
					}
					key_prefix    app:
					pool_size     20
					dial_timeout  3s
					read_timeout  500ms
					write_timeout 750ms
				}
				cache_ttl  2s
				cache_size 500
				store_id_token off
			}
			refresh                    off
			refresh_leeway             2m
			refresh_on                 id_token
			keep_session_when_idp_down
			pass_access_token          X-Access-Token
			allow                      email *@example.com boss@partner.example
			allow {
				group       staff
				claim       realm_access.roles admin auditor
				claim_regex sub "^[0-9]+$"
			}
			deny                       claim resource_access.app.roles blocked
			allow_unverified_email
			require_acr                gold silver
			max_age                    10m
			pass_unauthenticated
			bearer {
				audiences https://api.example.com
			}
			api_match        path /api/*
			navigation_match path /docs/*
			assertion {
				audience https://app.internal
			}
			userinfo_path              /api/me
		}`,
		want: PKCEAuth{
			Issuer:                "https://idp.example.com/realms/main",
			DiscoveryURL:          "http://keycloak:8080/realms/main/.well-known/openid-configuration",
			AuthorizationEndpoint: "https://idp.example.com/auth",
			TokenEndpoint:         "https://idp.example.com/token",
			UserinfoEndpoint:      "https://idp.example.com/userinfo",
			JWKSURI:               "https://idp.example.com/certs",
			EndSessionEndpoint:    "https://idp.example.com/logout",
			ClientID:              "caddy",
			ClientSecret:          "{env.OIDC_CLIENT_SECRET}",
			ClientAuthMethod:      "post",
			Scopes:                []string{"openid", "email", "profile", "groups"},
			AuthParams:            map[string]string{"prompt": "login", "acr_values": "urn:mace:incommon:iap:silver"},
			ForwardAuthParams:     []string{"login_hint", "ui_locales"},
			RedirectURL:           "https://app.example.com/oauth2/callback",
			ResponseMode:          "form_post",
			CallbackPath:          "/auth/callback",
			LogoutPath:            "/auth/logout",
			PostLogoutRedirect:    "/goodbye",
			SessionLifetime:       caddy.Duration(8 * time.Hour),
			IdleTimeout:           caddy.Duration(30 * time.Minute),
			LoginTimeout:          caddy.Duration(5 * time.Minute),
			MaxPendingLogins:      3,
			CookieName:            "app_session",
			CookieDomain:          "example.com",
			CookiePath:            "/app",
			CookieSameSite:        "strict",
			CookieSecure:          "always",
			SessionKeys:           []string{"{file./run/secrets/key1}", "{file./run/secrets/key0}"},
			UserIDClaim:           "preferred_username",
			GroupsClaim:           "realm_access.roles",
			Claims:                []string{"department", "resource_access.app.roles"},
			SigningAlgs:           []string{"RS256", "ES256"},
			PKCEMethod:            "plain",
			RequireS256Discovery:  true,
			Userinfo:              true,
			Timeout:               caddy.Duration(5 * time.Second),
			ClockSkew:             caddy.Duration(2 * time.Minute),
			Headers:               map[string]string{"X-User-Email": "email", "X-User-Groups": "groups"},
			KeepCookies:           true,
			Session: &SessionConfig{
				Store: "redis",
				Redis: &RedisConfig{
					Addresses:        []string{"10.0.0.1:26379", "10.0.0.2:26379"},
					Username:         "caddy",
					Password:         "{env.REDIS_PASSWORD}",
					DB:               2,
					MasterName:       "sessions",
					SentinelPassword: "{env.SENTINEL_PASSWORD}",
					TLS: &RedisTLS{Enabled: true, InsecureSkipVerify: true, ServerName: "redis.internal",
						CAFile: "/etc/redis/ca.pem", CertFile: "/etc/redis/client.pem", KeyFile: "/etc/redis/client-key.pem"},
					KeyPrefix:    "app:",
					PoolSize:     20,
					DialTimeout:  caddy.Duration(3 * time.Second),
					ReadTimeout:  caddy.Duration(500 * time.Millisecond),
					WriteTimeout: caddy.Duration(750 * time.Millisecond),
				},
				CacheTTL:  caddy.Duration(2 * time.Second),
				CacheSize: 500, StoreIDToken: new(bool),
			},
			Refresh:                new(bool),
			RefreshLeeway:          caddy.Duration(2 * time.Minute),
			RefreshOn:              "id_token",
			KeepSessionWhenIdPDown: true,
			PassAccessToken:        "X-Access-Token",
			Allow: []Rule{
				{Email: []string{"*@example.com", "boss@partner.example"}},
				{
					Groups:      []string{"staff"},
					Claims:      map[string][]string{"realm_access.roles": {"admin", "auditor"}},
					ClaimsRegex: map[string][]string{"sub": {"^[0-9]+$"}},
				},
			},
			Deny:                 []Rule{{Claims: map[string][]string{"resource_access.app.roles": {"blocked"}}}},
			AllowUnverifiedEmail: true,
			RequireACR:           []string{"gold", "silver"},
			MaxAge:               caddy.Duration(10 * time.Minute),
			PassUnauthenticated:  true,
			Bearer:               &BearerConfig{Audiences: []string{"https://api.example.com"}},
			APIMatchRaw:          caddyhttp.RawMatcherSets{{"path": json.RawMessage(`["/api/*"]`)}},
			NavigationMatchRaw:   caddyhttp.RawMatcherSets{{"path": json.RawMessage(`["/docs/*"]`)}},
			Assertion:            &AssertionConfig{Audience: "https://app.internal"},
			UserinfoPath:         ptr("/api/me"),
		},
	},
	{
		name: "rules in every form",
		input: `pkce_auth {
			allow group admins
			allow claim_regex email ".*@(corp|staff)\.example\.com"
			allow {
				email *@corp.example.com
				claim resource_access.app.roles editor
				claim hd corp.example.com
			}
			deny email intern@corp.example.com
			deny {
				group contractors
			}
		}`,
		want: PKCEAuth{
			Allow: []Rule{
				{Groups: []string{"admins"}},
				{ClaimsRegex: map[string][]string{"email": {`.*@(corp|staff)\.example\.com`}}},
				{Email: []string{"*@corp.example.com"}, Claims: map[string][]string{
					"resource_access.app.roles": {"editor"}, "hd": {"corp.example.com"},
				}},
			},
			Deny: []Rule{{Email: []string{"intern@corp.example.com"}}, {Groups: []string{"contractors"}}},
		},
	},
	{
		name: "session stores",
		input: `pkce_auth {
			session {
				store caddy_storage
				cache_ttl off
			}
			refresh on
			pass_access_token
		}`,
		want: PKCEAuth{
			Session:         &SessionConfig{Store: "caddy_storage", CacheTTL: cacheTTLOff},
			Refresh:         func() *bool { on := true; return &on }(),
			PassAccessToken: "Authorization",
		},
	},
	{
		name: "redis cluster with addresses in the block and plain tls",
		input: `pkce_auth {
			session {
				store redis {
					addresses redis-0:6379
					cluster
					tls
				}
			}
		}`,
		want: PKCEAuth{Session: &SessionConfig{Store: "redis", Redis: &RedisConfig{
			Addresses: []string{"redis-0:6379"},
			Cluster:   true,
			TLS:       &RedisTLS{Enabled: true},
		}}},
	},
	{
		name: "session cookie store",
		input: `pkce_auth {
			session {
				store cookie
			}
		}`,
		want: PKCEAuth{Session: &SessionConfig{Store: "cookie"}},
	},
	{
		name: "idle_timeout off",
		input: `pkce_auth {
			idle_timeout off
		}`,
		want: PKCEAuth{IdleTimeout: idleTimeoutOff},
	},
	{
		name: "day durations",
		input: `pkce_auth {
			session_lifetime 7d
			idle_timeout 1d12h
		}`,
		want: PKCEAuth{
			SessionLifetime: caddy.Duration(7 * 24 * time.Hour),
			IdleTimeout:     caddy.Duration(36 * time.Hour),
		},
	},
	{
		name: "placeholders are kept as written",
		input: `pkce_auth {
			issuer {env.OIDC_ISSUER}
			client_id {env.OIDC_CLIENT_ID}
			client_secret {file./run/secrets/oidc}
		}`,
		want: PKCEAuth{
			Issuer:       "{env.OIDC_ISSUER}",
			ClientID:     "{env.OIDC_CLIENT_ID}",
			ClientSecret: "{file./run/secrets/oidc}",
		},
	},
	{
		name: "auth_param with an empty value",
		input: `pkce_auth {
			auth_param audience ""
		}`,
		want: PKCEAuth{AuthParams: map[string]string{"audience": ""}},
	},
	{
		name: "single scope",
		input: `pkce_auth {
			scopes openid
		}`,
		want: PKCEAuth{Scopes: []string{"openid"}},
	},
}

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range caddyfileCases {
		t.Run(tc.name, func(t *testing.T) { expectParsed(t, tc.input, tc.want) })
	}
}

// expectParsed checks that input, a pkce_auth directive, parses into want.
func expectParsed(t *testing.T, input string, want PKCEAuth) {
	t.Helper()
	var got PKCEAuth
	if err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
		t.Fatalf("UnmarshalCaddyfile: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		t.Errorf("got\n%+v\nwant\n%+v\n(JSON: got %s, want %s)", got, want, gj, wj)
	}
}

// expectParseError checks that input fails to parse with an error that
// contains wantErr and names the Caddyfile line.
func expectParseError(t *testing.T, input, wantErr string) {
	t.Helper()
	var p PKCEAuth
	err := p.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
	if err == nil {
		t.Fatalf("no error; want one containing %q", wantErr)
	}
	if !strings.Contains(err.Error(), wantErr) {
		t.Errorf("error %q does not contain %q", err, wantErr)
	}
	if !strings.Contains(err.Error(), "Testfile:") {
		t.Errorf("error %q does not name the Caddyfile line", err)
	}
}

// TestUnmarshalCaddyfileCoversEveryField fails when module.go gains a JSON
// field that the "every subdirective" case does not set, so the Caddyfile
// keeps mapping 1:1 onto the JSON config.
func TestUnmarshalCaddyfileCoversEveryField(t *testing.T) {
	var full PKCEAuth
	for _, tc := range caddyfileCases {
		if tc.name == "every subdirective" {
			full = tc.want
		}
	}
	v := reflect.ValueOf(full)
	for i := range v.NumField() {
		f := v.Type().Field(i)
		tag := f.Tag.Get("json")
		if tag == "" || tag == "-" || strings.HasPrefix(tag, "providers,") {
			continue // providers: set by the arguments (TestProvidersCaddyfile)
		}
		if v.Field(i).IsZero() {
			t.Errorf("field %s (json %q) is not set by any subdirective in the \"every subdirective\" case", f.Name, strings.Split(tag, ",")[0])
		}
	}
}

// caddyfileErrors maps invalid input to a part of the expected error.
var caddyfileErrors = map[string]struct {
	input   string
	wantErr string
}{
	"unknown subdirective": {
		input:   "pkce_auth {\n issuer https://idp\n client_idd x\n}",
		wantErr: "unrecognized subdirective client_idd",
	},
	"directive with an argument": {
		input:   "pkce_auth https://idp.example.com {\n client_id x\n}",
		wantErr: `pkce_auth: "https://idp.example.com" is not a provider name`,
	},
	"missing argument": {
		input:   "pkce_auth {\n issuer\n}",
		wantErr: "wrong argument count",
	},
	"too many arguments": {
		input:   "pkce_auth {\n client_id a b\n}",
		wantErr: "wrong argument count",
	},
	"duplicate subdirective": {
		input:   "pkce_auth {\n client_id a\n client_id b\n}",
		wantErr: "subdirective client_id may be given only once",
	},
	"duplicate flag": {
		input:   "pkce_auth {\n userinfo\n userinfo\n}",
		wantErr: "subdirective userinfo may be given only once",
	},
	"duplicate list": {
		input:   "pkce_auth {\n scopes openid\n scopes email\n}",
		wantErr: "subdirective scopes may be given only once",
	},
	"empty list": {
		input:   "pkce_auth {\n scopes\n}",
		wantErr: "wrong argument count",
	},
	"flag with argument": {
		input:   "pkce_auth {\n userinfo true\n}",
		wantErr: "wrong argument count",
	},
	"keep_cookies with argument": {
		input:   "pkce_auth {\n keep_cookies yes\n}",
		wantErr: "wrong argument count",
	},
	"require_s256_discovery with argument": {
		input:   "pkce_auth {\n require_s256_discovery on\n}",
		wantErr: "wrong argument count",
	},
	"bad duration": {
		input:   "pkce_auth {\n session_lifetime forever\n}",
		wantErr: `session_lifetime: "forever" is not a duration`,
	},
	"bad idle_timeout": {
		input:   "pkce_auth {\n idle_timeout never\n}",
		wantErr: `idle_timeout: "never" is not a duration`,
	},
	"duration without unit": {
		input:   "pkce_auth {\n timeout 10\n}",
		wantErr: `timeout: "10" is not a duration`,
	},
	"bad integer": {
		input:   "pkce_auth {\n max_pending_logins five\n}",
		wantErr: `max_pending_logins: "five" is not a whole number`,
	},
	"auth_param without value": {
		input:   "pkce_auth {\n auth_param prompt\n}",
		wantErr: "wrong argument count",
	},
	"auth_param with too many values": {
		input:   "pkce_auth {\n auth_param prompt login consent\n}",
		wantErr: "wrong argument count",
	},
	"auth_param with an empty name": {
		input:   "pkce_auth {\n auth_param \"\" login\n}",
		wantErr: "auth_param needs a non-empty name",
	},
	"duplicate auth_param": {
		input:   "pkce_auth {\n auth_param prompt login\n auth_param prompt consent\n}",
		wantErr: "auth_param prompt is given more than once",
	},
	"header without claim": {
		input:   "pkce_auth {\n header X-User\n}",
		wantErr: "wrong argument count",
	},
	"header with too many arguments": {
		input:   "pkce_auth {\n header X-User sub email\n}",
		wantErr: "wrong argument count",
	},
	"header with an empty name": {
		input:   "pkce_auth {\n header \"\" sub\n}",
		wantErr: "header needs a non-empty name",
	},
	"duplicate header": {
		input:   "pkce_auth {\n header X-User sub\n header X-User email\n}",
		wantErr: "header X-User is given more than once",
	},
	"duplicate header differing in case": {
		input:   "pkce_auth {\n header X-User sub\n header x-user email\n}",
		wantErr: "header x-user is given more than once",
	},
	"subdirective with a block": {
		input:   "pkce_auth {\n issuer https://idp {\n }\n}",
		wantErr: "do not take a block",
	},
	"session with an argument": {
		input:   "pkce_auth {\n session redis\n}",
		wantErr: `session takes no arguments, found "redis"`,
	},
	"unknown session subdirective": {
		input:   "pkce_auth {\n session {\n  stor redis\n }\n}",
		wantErr: "unrecognized session subdirective stor",
	},
	"redis client_cert without the key": {
		input:   "pkce_auth {\n session {\n  store redis a:1 {\n   tls {\n    client_cert c.pem\n   }\n  }\n }\n}",
		wantErr: "client_cert takes <cert_file> <key_file>",
	},
	"store_id_token not on or off": {
		input:   "pkce_auth {\n session {\n  store_id_token yes\n }\n}",
		wantErr: `session: store_id_token must be on or off, not "yes"`,
	},
	"duplicate session subdirective": {
		input:   "pkce_auth {\n session {\n  store cookie\n  store redis a:1\n }\n}",
		wantErr: "session: store may be given only once",
	},
	"store without a name": {
		input:   "pkce_auth {\n session {\n  store\n }\n}",
		wantErr: "wrong argument count",
	},
	"cookie store with arguments": {
		input:   "pkce_auth {\n session {\n  store cookie a:1\n }\n}",
		wantErr: "store cookie takes no arguments or block",
	},
	"caddy_storage store with a block": {
		input:   "pkce_auth {\n session {\n  store caddy_storage {\n   key_prefix x\n  }\n }\n}",
		wantErr: "store caddy_storage takes no arguments or block",
	},
	"unknown redis subdirective": {
		input:   "pkce_auth {\n session {\n  store redis a:1 {\n   passwd x\n  }\n }\n}",
		wantErr: "unrecognized redis subdirective passwd",
	},
	"redis addresses twice": {
		input:   "pkce_auth {\n session {\n  store redis a:1 {\n   addresses b:1\n  }\n }\n}",
		wantErr: "addresses are already given",
	},
	"bad redis db": {
		input:   "pkce_auth {\n session {\n  store redis a:1 {\n   db one\n  }\n }\n}",
		wantErr: `db: "one" is not a whole number`,
	},
	"unknown redis tls subdirective": {
		input:   "pkce_auth {\n session {\n  store redis a:1 {\n   tls {\n    ca x\n   }\n  }\n }\n}",
		wantErr: "unrecognized redis tls subdirective ca",
	},
	"bad cache_ttl": {
		input:   "pkce_auth {\n session {\n  cache_ttl soon\n }\n}",
		wantErr: `cache_ttl: "soon" is not a duration`,
	},
	"refresh with a bad value": {
		input:   "pkce_auth {\n refresh yes\n}",
		wantErr: `refresh must be on or off, not "yes"`,
	},
	"pass_access_token with two headers": {
		input:   "pkce_auth {\n pass_access_token A B\n}",
		wantErr: "wrong argument count",
	},
	"allow without a condition": {
		input:   "pkce_auth {\n allow\n}",
		wantErr: "allow needs a condition",
	},
	"allow with an empty block": {
		input:   "pkce_auth {\n allow {\n }\n}",
		wantErr: "allow needs a condition",
	},
	"allow with a line and a block": {
		input:   "pkce_auth {\n allow group a {\n  email x@y\n }\n}",
		wantErr: "allow takes one condition on its line or a block of conditions, not both",
	},
	"unknown condition": {
		input:   "pkce_auth {\n deny role admin\n}",
		wantErr: "unrecognized deny condition role",
	},
	"unknown condition in a block": {
		input:   "pkce_auth {\n allow {\n  groups a\n }\n}",
		wantErr: "unrecognized allow condition groups",
	},
	"email without values": {
		input:   "pkce_auth {\n allow email\n}",
		wantErr: "allow email needs at least one value",
	},
	"claim without values": {
		input:   "pkce_auth {\n allow claim realm_access.roles\n}",
		wantErr: "allow claim needs a claim path and at least one value",
	},
	"claim_regex without values": {
		input:   "pkce_auth {\n deny claim_regex sub\n}",
		wantErr: "deny claim_regex needs a claim path and at least one value",
	},
	"email twice in a rule": {
		input:   "pkce_auth {\n allow {\n  email a@b\n  email c@d\n }\n}",
		wantErr: "allow: email may be given only once per rule",
	},
	"group twice in a rule": {
		input:   "pkce_auth {\n deny {\n  group a\n  group b\n }\n}",
		wantErr: "deny: group may be given only once per rule",
	},
	"claim path twice in a rule": {
		input:   "pkce_auth {\n allow {\n  claim hd a\n  claim hd b\n }\n}",
		wantErr: "allow: claim hd may be given only once per rule",
	},
	"condition with a block": {
		input:   "pkce_auth {\n allow {\n  group a {\n   b\n  }\n }\n}",
		wantErr: "allow: group does not take a block",
	},
	"require_acr without values": {
		input:   "pkce_auth {\n require_acr\n}",
		wantErr: "wrong argument count",
	},
	"bad max_age": {
		input:   "pkce_auth {\n max_age 300\n}",
		wantErr: `max_age: "300" is not a duration`,
	},
	"pass_unauthenticated with an argument": {
		input:   "pkce_auth {\n pass_unauthenticated yes\n}",
		wantErr: "wrong argument count",
	},
	"duplicate require_acr": {
		input:   "pkce_auth {\n require_acr a\n require_acr b\n}",
		wantErr: "subdirective require_acr may be given only once",
	},
	"flag with a block": {
		input:   "pkce_auth {\n userinfo {\n }\n}",
		wantErr: "do not take a block",
	},
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	for name, tc := range caddyfileErrors {
		t.Run(name, func(t *testing.T) { expectParseError(t, tc.input, tc.wantErr) })
	}
}
