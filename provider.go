package pkceauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

// errProviderUnavailable marks failures to reach the provider, which the
// user sees as 503.
var errProviderUnavailable = errors.New("the identity provider is unreachable")

// provider discovers the OpenID provider lazily, with retry and backoff, so
// that an IdP outage never fails Caddy's start; sessions already issued keep
// working meanwhile, since checking them needs no network.
type provider struct {
	cfg    *PKCEAuth
	logger *zap.Logger
	client *http.Client

	ready atomic.Pointer[providerState]

	mu      sync.Mutex // serialises discovery attempts
	lastErr error
	nextTry time.Time
	backoff time.Duration
}

// providerState is what a successful discovery yields.
type providerState struct {
	oauth2           oauth2.Config // RedirectURL is set per request
	verifier         *oidc.IDTokenVerifier
	oidc             *oidc.Provider
	userinfoURL      string
	endSession       string
	issParamRequired bool // RFC 9207 authorization_response_iss_parameter_supported
	pkceMethod       string

	// For bearer tokens (bearer.go): the key set's URL, the same the ID
	// token verifier uses, and the accepted algorithms (signing_algs
	// intersected with the provider's list).
	jwksURI     string
	signingAlgs []string
}

// discoveryExtras are the discovery fields go-oidc does not surface.
type discoveryExtras struct {
	Issuer                 string   `json:"issuer"`
	JWKSURI                string   `json:"jwks_uri"`
	EndSessionEndpoint     string   `json:"end_session_endpoint"`
	CodeChallengeMethods   []string `json:"code_challenge_methods_supported"`
	IssParameterSupported  bool     `json:"authorization_response_iss_parameter_supported"`
	IDTokenSigningAlgs     []string `json:"id_token_signing_alg_values_supported"`
	ResponseModesSupported []string `json:"response_modes_supported"`
}

const (
	minDiscoveryBackoff = time.Second
	maxDiscoveryBackoff = time.Minute
)

func newProvider(cfg *PKCEAuth, logger *zap.Logger) *provider {
	return &provider{
		cfg:    cfg,
		logger: logger,
		client: &http.Client{Timeout: time.Duration(cfg.Timeout)},
	}
}

// context returns ctx carrying the timeout-bound HTTP client for go-oidc and
// x/oauth2.
func (pr *provider) context(ctx context.Context) context.Context {
	ctx = oidc.ClientContext(ctx, pr.client)
	return context.WithValue(ctx, oauth2.HTTPClient, pr.client)
}

// warm tries discovery in the background until it succeeds or the config
// is unloaded, so the first login usually finds the provider ready.
func (pr *provider) warm(stop <-chan struct{}) {
	for {
		if _, err := pr.get(context.Background()); err == nil {
			return
		}
		pr.mu.Lock()
		wait := time.Until(pr.nextTry)
		pr.mu.Unlock()
		select {
		case <-stop:
			return
		case <-time.After(max(wait, minDiscoveryBackoff)):
		}
	}
}

// get returns the discovered provider, discovering it now if the last
// attempt is older than the backoff. Errors wrap errProviderUnavailable or
// describe a configuration mismatch.
func (pr *provider) get(ctx context.Context) (*providerState, error) {
	if st := pr.ready.Load(); st != nil {
		return st, nil
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if st := pr.ready.Load(); st != nil {
		return st, nil
	}
	if time.Now().Before(pr.nextTry) {
		return nil, pr.lastErr
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(pr.cfg.Timeout))
	defer cancel()
	st, err := pr.discover(ctx)
	if err != nil {
		pr.backoff = min(max(pr.backoff*2, minDiscoveryBackoff), maxDiscoveryBackoff)
		pr.nextTry = time.Now().Add(pr.backoff)
		pr.lastErr = err
		if c := pr.logger.Check(zap.WarnLevel, "provider discovery failed; will retry"); c != nil {
			c.Write(zap.String("issuer", pr.cfg.Issuer), zap.Error(err), zap.Duration("retry_in", pr.backoff))
		}
		return nil, err
	}
	pr.ready.Store(st)
	pr.lastErr = nil
	if c := pr.logger.Check(zap.InfoLevel, "provider discovered"); c != nil {
		c.Write(zap.String("issuer", pr.cfg.Issuer), zap.String("pkce_method", st.pkceMethod),
			zap.Bool("rfc9207_iss", st.issParamRequired), zap.Bool("end_session", st.endSession != ""))
	}
	return st, nil
}

func (pr *provider) discover(ctx context.Context) (*providerState, error) {
	cfg := pr.cfg
	ctx = pr.context(ctx)

	var op *oidc.Provider
	var extras discoveryExtras
	explicit := cfg.AuthorizationEndpoint != "" && cfg.TokenEndpoint != "" && cfg.JWKSURI != ""
	if explicit {
		op = (&oidc.ProviderConfig{
			IssuerURL:   cfg.Issuer,
			AuthURL:     cfg.AuthorizationEndpoint,
			TokenURL:    cfg.TokenEndpoint,
			UserInfoURL: cfg.UserinfoEndpoint,
			JWKSURL:     cfg.JWKSURI,
			Algorithms:  cfg.SigningAlgs,
		}).NewProvider(context.WithoutCancel(ctx))
		extras.EndSessionEndpoint = cfg.EndSessionEndpoint
		extras.JWKSURI = cfg.JWKSURI
	} else {
		var err error
		if cfg.DiscoveryURL != "" {
			// go-oidc then skips its issuer comparison; we do it below.
			base := strings.TrimSuffix(cfg.DiscoveryURL, wellKnownSuffix)
			op, err = oidc.NewProvider(oidc.InsecureIssuerURLContext(ctx, cfg.Issuer), base)
		} else {
			op, err = oidc.NewProvider(ctx, cfg.Issuer)
		}
		if err != nil {
			var mismatch *oidc.IssuerMismatchError
			if errors.As(err, &mismatch) {
				return nil, fmt.Errorf("the discovery document says issuer %q, but issuer is configured as %q; set issuer to exactly the provider's value (a trailing slash matters)", mismatch.Discovered, mismatch.Provided)
			}
			return nil, fmt.Errorf("%w: discovery at %s: %v", errProviderUnavailable, cfg.Issuer, err)
		}
		if err := op.Claims(&extras); err != nil {
			return nil, fmt.Errorf("%w: reading discovery document: %v", errProviderUnavailable, err)
		}
		if cfg.DiscoveryURL != "" && extras.Issuer != cfg.Issuer {
			return nil, fmt.Errorf("the discovery document at %s says issuer %q, but issuer is configured as %q", cfg.DiscoveryURL, extras.Issuer, cfg.Issuer)
		}
		if cfg.UserinfoEndpoint != "" {
			// go-oidc's UserInfo calls the endpoint its Provider was made
			// with, so the override needs a Provider of its own.
			var pc oidc.ProviderConfig
			if err := op.Claims(&pc); err != nil {
				return nil, fmt.Errorf("%w: reading discovery document: %v", errProviderUnavailable, err)
			}
			pc.UserInfoURL = cfg.UserinfoEndpoint
			op = pc.NewProvider(context.WithoutCancel(ctx))
		}
	}

	st := &providerState{
		oidc:             op,
		userinfoURL:      op.UserInfoEndpoint(),
		endSession:       extras.EndSessionEndpoint,
		issParamRequired: extras.IssParameterSupported,
		jwksURI:          extras.JWKSURI,
	}
	if cfg.EndSessionEndpoint != "" {
		st.endSession = cfg.EndSessionEndpoint
	}
	if cfg.UserinfoEndpoint != "" {
		st.userinfoURL = cfg.UserinfoEndpoint
	}

	if cfg.Userinfo && st.userinfoURL == "" {
		return nil, errors.New("userinfo is set but the provider has no userinfo_endpoint; set userinfo_endpoint or remove userinfo")
	}

	method, err := pr.choosePKCEMethod(extras.CodeChallengeMethods)
	if err != nil {
		return nil, err
	}
	st.pkceMethod = method

	algs := cfg.SigningAlgs
	if len(extras.IDTokenSigningAlgs) > 0 {
		algs = slices.DeleteFunc(slices.Clone(cfg.SigningAlgs), func(a string) bool {
			return !slices.Contains(extras.IDTokenSigningAlgs, a)
		})
		if len(algs) == 0 {
			return nil, fmt.Errorf("the provider signs ID tokens with %s, none of which is in signing_algs (%s); configure the provider to sign with an asymmetric key (e.g. RS256 or ES256), or add its algorithm to signing_algs",
				strings.Join(extras.IDTokenSigningAlgs, ", "), strings.Join(cfg.SigningAlgs, ", "))
		}
	}

	st.signingAlgs = algs

	endpoint := op.Endpoint()
	if cfg.AuthorizationEndpoint != "" {
		endpoint.AuthURL = cfg.AuthorizationEndpoint
	}
	if cfg.TokenEndpoint != "" {
		endpoint.TokenURL = cfg.TokenEndpoint
	}
	endpoint.AuthStyle = oauth2.AuthStyleInParams
	if cfg.ClientAuthMethod == "basic" {
		endpoint.AuthStyle = oauth2.AuthStyleInHeader
	}
	st.oauth2 = oauth2.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		Endpoint:     endpoint,
		Scopes:       cfg.scopes,
	}

	skew := time.Duration(cfg.ClockSkew)
	st.verifier = op.VerifierContext(context.WithoutCancel(ctx), &oidc.Config{
		ClientID:             cfg.ClientID,
		SupportedSigningAlgs: algs,
		// go-oidc checks exp without leeway; shift its clock back by the
		// allowed skew. iat is checked in callback.go.
		Now: func() time.Time { return now().Add(-skew) },
	})
	return st, nil
}

// choosePKCEMethod applies the rule: always S256 unless plain is configured;
// a provider that lists methods without S256 gets a warning (or an error
// with require_s256_discovery), and one that lists none still gets S256.
func (pr *provider) choosePKCEMethod(listed []string) (string, error) {
	cfg := pr.cfg
	if cfg.PKCEMethod == "plain" {
		pr.logger.Warn("pkce_method plain is configured: the code verifier travels in clear through the browser; use S256 unless the provider cannot",
			zap.String("issuer", cfg.Issuer))
		return "plain", nil
	}
	if len(listed) > 0 && !slices.Contains(listed, "S256") {
		msg := fmt.Sprintf("issuer %s did not list S256 in code_challenge_methods_supported (it lists %s)", cfg.Issuer, strings.Join(listed, ", "))
		if cfg.RequireS256Discovery {
			return "", errors.New(msg + "; refusing to log in because require_s256_discovery is set")
		}
		pr.logger.Warn(msg + "; sending S256 anyway")
	}
	return "S256", nil
}

const wellKnownSuffix = "/.well-known/openid-configuration"
