package testop

import (
	"crypto/rand"
	"encoding/base64"
	"time"
)

// authCode is an issued authorization code and what it is bound to.
type authCode struct {
	clientID        string
	redirectURI     string
	challenge       string // "" only under AcceptWithoutPKCE
	challengeMethod string // "S256", or "plain" under AcceptWithoutPKCE
	nonce           string
	scope           string
	subject         string
	sid             string
	acr             string // the level the login met: the first requested acr_values value
	authTime        time.Time
	expires         time.Time
	used            bool
	grantID         string // the grant the code was exchanged for
}

// grant is what a successful code exchange creates: the tokens issued from
// it, refreshed or not, share it and are revoked together.
type grant struct {
	id       string
	clientID string
	subject  string
	scope    string
	sid      string
	acr      string
	authTime time.Time
	revoked  bool
}

type refreshToken struct {
	grantID string
	used    bool
}

// grantStore holds codes, grants and tokens; the Provider's mutex guards it.
type grantStore struct {
	codes   map[string]*authCode
	grants  map[string]*grant
	refresh map[string]*refreshToken
	access  map[string]string // access token jti → grant id
}

func newGrantStore() grantStore {
	return grantStore{
		codes:   map[string]*authCode{},
		grants:  map[string]*grant{},
		refresh: map[string]*refreshToken{},
		access:  map[string]string{},
	}
}

func (s *grantStore) addCode(c *authCode) string {
	code := randomToken()
	s.codes[code] = c
	return code
}

func (s *grantStore) grantFromCode(c *authCode) *grant {
	g := &grant{
		id:       randomToken(),
		clientID: c.clientID,
		subject:  c.subject,
		scope:    c.scope,
		sid:      c.sid,
		acr:      c.acr,
		authTime: c.authTime,
	}
	s.grants[g.id] = g
	c.grantID = g.id
	return g
}

func (s *grantStore) addRefresh(g *grant) string {
	rt := randomToken()
	s.refresh[rt] = &refreshToken{grantID: g.id}
	return rt
}

// revoke ends a grant: its refresh and access tokens stop working.
func (s *grantStore) revoke(grantID string) {
	if g := s.grants[grantID]; g != nil {
		g.revoked = true
	}
}

// revokeSession revokes every grant of a login session.
func (s *grantStore) revokeSession(sid string) {
	for _, g := range s.grants {
		if g.sid == sid {
			g.revoked = true
		}
	}
}

// randomToken is 32 random bytes, base64url: codes, refresh tokens, ids.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}
