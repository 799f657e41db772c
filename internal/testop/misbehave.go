package testop

import "time"

// Misbehaviour switches the provider into failure modes. The zero value
// behaves. Unless a field says otherwise, ID token switches apply to every ID
// token the token endpoint issues (authorization_code and refresh_token
// grants), not to SignIDToken.
type Misbehaviour struct {
	// ID token claims.
	WrongNonce         bool // nonce is "wrong-" + the requested nonce
	WrongIssuer        bool // iss is "https://wrong-issuer.invalid"
	WrongAudience      bool // aud is "other-client" only
	ExtraAudienceNoAzp bool // aud is [client_id, "other-client"] and azp is absent
	WrongAzp           bool // aud is [client_id, "other-client"] and azp is "other-client"
	Expired            bool // exp is 10 minutes in the past (iat and auth_time one TTL before)
	IssuedInFuture     bool // iat is 10 minutes in the future (exp one TTL after that)
	ThinIDToken        bool // quirk, not a fault: ID token carries no user claims beyond sub; userinfo has them
	// Step-up (acr_values, max_age). The provider always authenticates
	// anew, so auth_time is the authorization request's time and acr the
	// first requested acr_values value, unless:
	WeakACR      bool // acr is "weak", whatever was requested
	OldAuthTime  bool // auth_time is one hour before the ID token's iat (an old SSO session reused despite max_age)
	OmitAuthTime bool // auth_time is left out, even when max_age was requested

	// ID token signature. Precedence: AlgNone, then SignHS256, then
	// UnknownKid; BadSignature then corrupts whatever signature was made.
	BadSignature bool // signature bytes flipped (still valid base64url)
	AlgNone      bool // unsigned token: header alg "none", empty signature
	SignHS256    bool // HS256 keyed with the client secret (Authentik, Auth0 quirk), no kid
	UnknownKid   bool // signed by a key that is not in the JWKS, under a kid that is not either

	// Token endpoint.
	OmitIDToken    bool   // token response has no id_token
	TokenError     string // answer 400 {"error": TokenError} to every token request
	TokenStatus500 bool   // answer 500 to every token request (wins over TokenError)

	// Authorization endpoint.
	// IssParam overrides the RFC 9207 iss parameter of authorization
	// responses: "" sends the correct issuer, "omit" leaves it out, any
	// other value is sent as is.
	IssParam string
	// AuthError, when set, makes every authorization request with a valid
	// client_id and redirect_uri redirect back with error=AuthError,
	// error_description, state and iss.
	AuthError string
	// AcceptWithoutPKCE stops enforcing PKCE like a lax provider (Dex):
	// requests without code_challenge and with method "plain" are accepted.
	// A challenge that was sent is still verified.
	AcceptWithoutPKCE bool

	// Userinfo.
	UserinfoWrongSub bool // userinfo answers sub "someone-else-sub"

	// Discovery. The PKCE switches change only the document: the
	// authorization endpoint still requires S256 (see AcceptWithoutPKCE).
	DiscoveryDown            bool // discovery answers 503
	NoPKCEMethodsInDiscovery bool // code_challenge_methods_supported left out (Entra ID)
	PlainOnlyInDiscovery     bool // code_challenge_methods_supported is ["plain"]
	NoEndSession             bool // end_session_endpoint left out, and the endpoint answers 404

	// Delay makes every endpoint wait this long before answering; the wait
	// ends early when the client gives up (request context cancelled).
	Delay time.Duration
}
