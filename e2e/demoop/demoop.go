// Package demoop runs a real OpenID provider for the demo and the end-to-end
// tests: the `op` package of github.com/zitadel/oidc/v3 (an OpenID
// Foundation certified implementation) with its example in-memory storage and
// login form, a demo user, and one public client that must use PKCE.
//
// A [Recorder] can wrap the provider to keep what it saw on the wire
// (authorization requests, token requests, end_session visits), so tests can
// check the PKCE parameters from the provider's side.
package demoop

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"

	"golang.org/x/text/language"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// User is a person who can log in at the demo provider.
type User struct {
	ID        string // the `sub` claim
	Username  string // typed into the login form
	Password  string
	FirstName string
	LastName  string
	Email     string
	Groups    []string // sent as the `groups` claim
}

// DemoUser is the user that the demo prints and the tests log in as.
var DemoUser = User{
	ID:        "demo-user-1",
	Username:  "demo",
	Password:  "demo-password",
	FirstName: "Demo",
	LastName:  "User",
	Email:     "demo@example.com",
	Groups:    []string{"demo", "staff"},
}

// Config describes the provider.
type Config struct {
	// Issuer is the provider's issuer URL, such as http://127.0.0.1:9998
	// (plain HTTP is allowed for loopback development).
	Issuer string
	// ClientID of the one registered public client. Default: "demo".
	ClientID string
	// RedirectURIs registered for the client, such as
	// http://127.0.0.1:8080/oauth2/callback.
	RedirectURIs []string
	// PostLogoutRedirectURIs registered for the client, such as
	// http://127.0.0.1:8080/.
	PostLogoutRedirectURIs []string
	// Users who can log in. Default: DemoUser.
	Users []User
	// Logger for the provider's request log. Default: slog.Default().
	Logger *slog.Logger
}

// New returns the provider's HTTP handler, to be served at the root of the
// issuer URL.
func New(cfg Config) (http.Handler, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("demoop: issuer is required")
	}
	if err := op.ValidateIssuer(cfg.Issuer, true); err != nil {
		return nil, err
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "demo"
	}
	if len(cfg.RedirectURIs) == 0 {
		return nil, errors.New("demoop: at least one redirect URI is required")
	}
	if len(cfg.Users) == 0 {
		cfg.Users = []User{DemoUser}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}

	// A native (public) client: no secret, token endpoint auth method
	// "none", so the provider requires PKCE and checks the code_verifier.
	// Loopback http redirect URIs are allowed for native clients (RFC 8252).
	base := storage.NativeClient(cfg.ClientID, cfg.RedirectURIs...)
	client := &demoClient{Client: base, postLogout: cfg.PostLogoutRedirectURIs}

	users := userStore{}
	groups := map[string][]string{}
	for _, u := range cfg.Users {
		users[u.ID] = &storage.User{
			ID:                u.ID,
			Username:          u.Username,
			Password:          u.Password,
			FirstName:         u.FirstName,
			LastName:          u.LastName,
			Email:             u.Email,
			EmailVerified:     true,
			PreferredLanguage: language.English,
		}
		groups[u.ID] = slices.Clone(u.Groups)
	}
	st := &demoStorage{
		Storage: storage.NewStorageWithClients(users, map[string]*storage.Client{cfg.ClientID: base}),
		client:  client,
		groups:  groups,
	}
	return exampleop.SetupServer(cfg.Issuer, st, cfg.Logger, false), nil
}

// demoClient adjusts the example's native client: it registers
// post-logout redirect URIs (the example registers none) and puts the
// profile and email claims in the ID token, as most providers do, so the
// relying party needs no userinfo call to show who is logged in.
type demoClient struct {
	*storage.Client
	postLogout []string
}

func (c *demoClient) PostLogoutRedirectURIs() []string { return c.postLogout }

func (c *demoClient) IDTokenUserinfoClaimsAssertion() bool { return true }

// demoStorage is the example's in-memory storage with the demo client and a
// `groups` claim added to the ID token and userinfo.
type demoStorage struct {
	*storage.Storage
	client *demoClient
	groups map[string][]string
}

func (s *demoStorage) GetClientByClientID(ctx context.Context, clientID string) (op.Client, error) {
	if clientID == s.client.GetID() {
		return s.client, nil
	}
	return s.Storage.GetClientByClientID(ctx, clientID)
}

func (s *demoStorage) SetUserinfoFromRequest(ctx context.Context, userinfo *oidc.UserInfo, token op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, userinfo, token, scopes); err != nil {
		return err
	}
	s.addGroups(userinfo, token.GetSubject())
	return nil
}

func (s *demoStorage) SetUserinfoFromToken(ctx context.Context, userinfo *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, userinfo, tokenID, subject, origin); err != nil {
		return err
	}
	s.addGroups(userinfo, userinfo.Subject)
	return nil
}

func (s *demoStorage) addGroups(userinfo *oidc.UserInfo, subject string) {
	if g := s.groups[subject]; len(g) > 0 {
		userinfo.AppendClaims("groups", g)
	}
}

// userStore implements storage.UserStore.
type userStore map[string]*storage.User

func (u userStore) GetUserByID(id string) *storage.User { return u[id] }

func (u userStore) GetUserByUsername(username string) *storage.User {
	for _, user := range u {
		if user.Username == username {
			return user
		}
	}
	return nil
}

func (u userStore) ExampleClientID() string { return storage.ServiceUserID }
