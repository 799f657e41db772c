package pkceauth

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

// TestGlobalOption: the pkce global option becomes the pkce app, each
// provider block the provider of that name with pkce_auth's settings.
func TestGlobalOption(t *testing.T) {
	input := `pkce {
		provider corp {
			display_name "Corp SSO"
			issuer       https://idp.example.com/realms/main
			client_id    caddy
			callback_path /sso/callback
			idle_timeout off
			session {
				store redis 10.0.0.1:6379 {
					db 2
				}
				cache_ttl off
			}
			refresh off
		}
		provider google {
			issuer    https://accounts.google.com
			client_id g
		}
	}`
	out, err := parseGlobalOption(caddyfile.NewTestDispenser(input), nil)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	app, ok := out.(httpcaddyfile.App)
	if !ok || app.Name != "pkce" {
		t.Fatalf("got %#v, want the pkce app", out)
	}
	var got App
	dec := json.NewDecoder(strings.NewReader(string(app.Value)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("app JSON %s: %v", app.Value, err)
	}
	off := false
	want := App{Providers: map[string]*NamedProvider{
		"corp": {DisplayName: "Corp SSO", PKCEAuth: PKCEAuth{
			Issuer: "https://idp.example.com/realms/main", ClientID: "caddy", CallbackPath: "/sso/callback",
			IdleTimeout: idleTimeoutOff, Refresh: &off,
			Session: &SessionConfig{Store: "redis", CacheTTL: cacheTTLOff, Redis: &RedisConfig{Addresses: []string{"10.0.0.1:6379"}, DB: 2}},
		}},
		"google": {PKCEAuth: PKCEAuth{Issuer: "https://accounts.google.com", ClientID: "g"}},
	}}
	if !reflect.DeepEqual(got, want) {
		gotJSON, _ := json.Marshal(got)
		wantJSON, _ := json.Marshal(want)
		t.Errorf("got\n%s\nwant\n%s", gotJSON, wantJSON)
	}
}

func TestGlobalOptionErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		input    string
		existing any
		want     string
	}{
		"empty":              {input: "pkce", want: "declare at least one provider"},
		"argument":           {input: "pkce corp {\n}", want: "wrong argument count"},
		"unknown option":     {input: "pkce {\n issuer https://x\n}", want: "unrecognized pkce option issuer"},
		"no name":            {input: "pkce {\n provider\n}", want: "provider needs a name"},
		"bad name":           {input: "pkce {\n provider corp_sso {\n  client_id x\n }\n}", want: `provider "corp_sso": a name has letters, digits and - only`},
		"two names":          {input: "pkce {\n provider a b {\n }\n}", want: "wrong argument count"},
		"declared twice":     {input: "pkce {\n provider a {\n }\n provider a {\n }\n}", want: "provider a is declared twice"},
		"unknown setting":    {input: "pkce {\n provider a {\n  isuser x\n }\n}", want: "unrecognized subdirective isuser"},
		"display_name twice": {input: "pkce {\n provider a {\n  display_name A\n  display_name B\n }\n}", want: "display_name may be given only once"},
		"display_name args":  {input: "pkce {\n provider a {\n  display_name A B\n }\n}", want: "wrong argument count"},
		"route setting":      {input: "pkce {\n provider a {\n  keep_cookies\n  claims x\n }\n}", want: "provider a: claims, keep_cookies are route settings"},
		"option twice":       {input: "pkce {\n provider a {\n }\n}", existing: httpcaddyfile.App{Name: "pkce"}, want: "may be given only once"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseGlobalOption(caddyfile.NewTestDispenser(tc.input), tc.existing)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestReferencingDirective: arguments after the matcher name providers;
// the block then takes route settings only.
func TestReferencingDirective(t *testing.T) {
	var p PKCEAuth
	err := p.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`pkce_auth corp google-2 {
		header X-User email
		claims department
		pass_access_token
		keep_cookies
	}`))
	if err != nil {
		t.Fatal(err)
	}
	want := PKCEAuth{
		Providers: []string{"corp", "google-2"}, Headers: map[string]string{"X-User": "email"},
		Claims: []string{"department"}, PassAccessToken: "Authorization", KeepCookies: true,
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got %+v, want %+v", p, want)
	}

	for input, wantErr := range map[string]string{
		"pkce_auth corp {\n issuer https://idp\n}":                   "issuer is provider-level",
		"pkce_auth corp {\n session {\n  store caddy_storage\n }\n}": "session is provider-level",
		"pkce_auth corp {\n refresh off\n cookie_name x\n}":          "cookie_name, refresh are provider-level",
		"pkce_auth corp/x": `"corp/x" is not a provider name`,
	} {
		var p PKCEAuth
		err := p.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: error %v, want one containing %q", input, err, wantErr)
		}
	}
}

// TestRouteFieldsSplit: every JSON field is either a route setting or a
// provider-level one, and a handler naming providers is refused for each
// provider-level one, by name (a field added later is provider-level
// unless listed in routeFields).
func TestRouteFieldsSplit(t *testing.T) {
	typ := reflect.TypeOf(PKCEAuth{})
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "" || name == "providers" {
			continue
		}
		p := PKCEAuth{Providers: []string{"corp"}}
		v := reflect.ValueOf(&p).Elem().Field(i)
		setNonZero(t, v)
		err := p.Validate()
		if routeFields[name] {
			if err != nil && strings.Contains(err.Error(), "provider-level") {
				t.Errorf("route setting %s refused on a handler naming providers: %v", name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), name+" is provider-level") {
			t.Errorf("provider-level %s set on a handler naming providers: Validate = %v, want it refused by name", name, err)
		}
	}
}

// setNonZero gives v some non-zero value of its type.
func setNonZero(t *testing.T, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint8:
		v.SetUint('1') // json.RawMessage: the JSON number 1
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		setNonZero(t, v.Index(0))
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		val := reflect.New(v.Type().Elem()).Elem()
		if val.Kind() == reflect.String {
			val.SetString("a")
		} else {
			setNonZero(t, val)
		}
		m.SetMapIndex(reflect.ValueOf("X-A").Convert(v.Type().Key()), val)
		v.Set(m)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
	case reflect.Struct:
		// A struct (such as a Rule) is non-zero with its first field set.
		setNonZero(t, v.Field(0))
	default:
		t.Fatalf("no non-zero value for %s", v.Type())
	}
}

// TestAppValidate: provider declarations are validated like inline
// handlers, and their cookies must not collide.
func TestAppValidate(t *testing.T) {
	provider := func(mod func(*PKCEAuth)) *NamedProvider {
		np := &NamedProvider{PKCEAuth: PKCEAuth{Issuer: "https://idp.example", ClientID: "c"}}
		np.setDefaults()
		if mod != nil {
			mod(&np.PKCEAuth)
		}
		return np
	}
	for name, tc := range map[string]struct {
		app  App
		want string
	}{
		"valid": {App{Providers: map[string]*NamedProvider{"a": provider(nil)}}, ""},
		"none":  {App{}, "no providers are declared"},
		"invalid provider": {App{Providers: map[string]*NamedProvider{"a": provider(func(p *PKCEAuth) { p.Issuer = "" })}},
			"provider a: issuer is required"},
		"same cookie": {App{Providers: map[string]*NamedProvider{"a": provider(nil), "b": provider(nil)}},
			"providers a and b: cookie_name pkce_session and pkce_session collide"},
		"chunk cookie": {App{Providers: map[string]*NamedProvider{
			"a": provider(func(p *PKCEAuth) { p.CookieName = "s_2" }),
			"b": provider(func(p *PKCEAuth) { p.CookieName = "s" }),
		}}, "providers b and a: cookie_name s and s_2 collide"},
	} {
		t.Run(name, func(t *testing.T) {
			err := tc.app.Validate()
			if tc.want == "" {
				if err != nil {
					t.Errorf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestCutProviderParam: only an exact last parameter naming a valid
// provider is taken; the rest of the query is kept byte for byte.
func TestCutProviderParam(t *testing.T) {
	for _, tc := range []struct {
		query, rest, name string
		ok                bool
	}{
		{"pkce_provider=corp", "", "corp", true},
		{"a=1&b=%2F&pkce_provider=corp", "a=1&b=%2F", "corp", true},
		{"pkce_provider=a&pkce_provider=b", "pkce_provider=a", "b", true},
		{"pkce_provider=corp&x=1", "", "", false},
		{"xpkce_provider=corp", "", "", false},
		{"a=pkce_provider=corp", "", "", false},
		{"pkce_provider=", "", "", false},
		{"pkce_provider=co%72p", "", "", false},
		{"pkce_provider=corp/../x", "", "", false},
		{"", "", "", false},
	} {
		rest, name, ok := cutProviderParam(tc.query)
		if rest != tc.rest || name != tc.name || ok != tc.ok {
			t.Errorf("cutProviderParam(%q) = %q, %q, %v; want %q, %q, %v", tc.query, rest, name, ok, tc.rest, tc.name, tc.ok)
		}
	}
}

// TestNamedProviderDefaults: a named provider's paths and cookie names
// derive from its name, so several providers never collide.
func TestNamedProviderDefaults(t *testing.T) {
	app := &App{Providers: map[string]*NamedProvider{
		"corp": {PKCEAuth: PKCEAuth{Issuer: "http://127.0.0.1:1", ClientID: "c", SessionKeys: []string{testKeyA}}},
	}}
	c := &app.Providers["corp"].PKCEAuth
	// The same defaults Provision applies, checked without provisioning.
	if err := app.applyNamedDefaults("corp", app.Providers["corp"]); err != nil {
		t.Fatal(err)
	}
	if c.CallbackPath != "/oauth2/corp/callback" || c.LogoutPath != "/oauth2/corp/logout" || c.CookieName != "pkce_session_corp" || c.displayName != "corp" {
		t.Errorf("defaults: callback %q logout %q cookie %q display %q", c.CallbackPath, c.LogoutPath, c.CookieName, c.displayName)
	}
	c.buildJars()
	if jar := c.jars[0]; jar.name != "pkce_session_corp" || jar.txn != "pkce_txn_corp_" {
		t.Errorf("jar: session %q, transactions %q", jar.name, jar.txn)
	}
}
