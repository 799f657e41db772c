package testop

import (
	"maps"
	"slices"
)

// User is the person who "logs in". Claims with a zero value are left out of
// tokens and userinfo, except email_verified, which is sent whenever Email is.
type User struct {
	Subject           string   // "sub"; required
	Email             string   // "email"
	EmailVerified     bool     // "email_verified", sent with Email
	Name              string   // "name"
	PreferredUsername string   // "preferred_username"
	Groups            []string // "groups"; nil leaves the claim out
	// Extra claims, added after the ones above. A nil value removes that
	// claim, e.g. {"email_verified": nil}; a string "true" imitates
	// providers that send booleans as strings. Extra cannot change protocol
	// claims of the ID token (iss, aud, exp...): craft those with
	// SignIDToken.
	Extra map[string]any
}

// DefaultUser is the user of a new Provider: alice.
func DefaultUser() User {
	return User{
		Subject:           "alice-sub",
		Email:             "alice@example.com",
		EmailVerified:     true,
		Name:              "Alice Example",
		PreferredUsername: "alice",
		Groups:            []string{"staff", "admins"},
	}
}

func (u User) clone() User {
	u.Groups = slices.Clone(u.Groups)
	u.Extra = maps.Clone(u.Extra)
	return u
}

// claims are the user's claims as sent in ID tokens and userinfo.
func (u User) claims() map[string]any {
	c := map[string]any{"sub": u.Subject}
	if u.Email != "" {
		c["email"] = u.Email
		c["email_verified"] = u.EmailVerified
	}
	if u.Name != "" {
		c["name"] = u.Name
	}
	if u.PreferredUsername != "" {
		c["preferred_username"] = u.PreferredUsername
	}
	if u.Groups != nil {
		c["groups"] = slices.Clone(u.Groups)
	}
	for k, v := range u.Extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}
