package pkceguard

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Refusal reasons, the values of the `reason` label.
const (
	reasonBadRequest         = "bad_request"         // malformed, ambiguous or unsupported request
	reasonMissingChallenge   = "missing_challenge"   // authorization request without code_challenge
	reasonMethodNotAllowed   = "method_not_allowed"  // code_challenge_method absent (plain) or not listed
	reasonMalformedChallenge = "malformed_challenge" // code_challenge of the wrong form
	reasonUnknownCode        = "unknown_code"        // token request for a code without binding
	reasonClientMismatch     = "client_mismatch"     // code issued to another client
	reasonRedirectMismatch   = "redirect_uri_mismatch"
	reasonMissingVerifier    = "missing_verifier"
	reasonMalformedVerifier  = "malformed_verifier"
	reasonVerifierMismatch   = "verifier_mismatch"
	reasonStoreError         = "store_unavailable" // failed closed
)

// allReasons are initialized at zero so dashboards see every series.
var allReasons = []string{
	reasonBadRequest, reasonMissingChallenge, reasonMethodNotAllowed, reasonMalformedChallenge,
	reasonUnknownCode, reasonClientMismatch, reasonRedirectMismatch, reasonMissingVerifier,
	reasonMalformedVerifier, reasonVerifierMismatch, reasonStoreError,
}

// metrics are the guard's Prometheus collectors.
type metrics struct {
	refusals *prometheus.CounterVec
}

// newMetrics registers the collectors on reg, or reuses those registered
// there before (several guards in one config).
func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	refusals := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "pkce_guard",
		Name:      "refusals_total",
		Help:      "Requests refused by pkce_guard, by reason.",
	}, []string{"reason"})
	if reg != nil {
		if err := reg.Register(refusals); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("pkce_guard: registering metrics: %w", err)
			}
			existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
			if !ok {
				return nil, fmt.Errorf("pkce_guard: metric caddy_pkce_guard_refusals_total is already registered by another module")
			}
			refusals = existing
		}
	}
	for _, r := range allReasons {
		refusals.WithLabelValues(r)
	}
	return &metrics{refusals: refusals}, nil
}

// refused counts one refusal.
func (m *metrics) refused(reason string) {
	m.refusals.WithLabelValues(reason).Inc()
}
