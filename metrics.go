package pkceauth

import (
	"errors"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are Prometheus counters in Caddy's metrics registry, shared by
// every pkce_auth handler (collectors survive config reloads).
type metrics struct {
	logins      *prometheus.CounterVec
	logouts     prometheus.Counter
	unavailable prometheus.Counter
	storeDown   prometheus.Counter
	refreshes   *prometheus.CounterVec
}

func newMetrics(ctx caddy.Context) *metrics {
	reg := ctx.GetMetricsRegistry()
	m := &metrics{
		logins: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "caddy", Subsystem: "pkce_auth", Name: "logins_total",
			Help: "Logins by result: started, succeeded, failed.",
		}, []string{"result"})),
		logouts: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "caddy", Subsystem: "pkce_auth", Name: "logouts_total",
			Help: "Sessions ended by logout.",
		})),
		unavailable: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "caddy", Subsystem: "pkce_auth", Name: "provider_unavailable_total",
			Help: "Requests answered 503 because the identity provider could not be reached or used.",
		})),
		storeDown: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "caddy", Subsystem: "pkce_auth", Name: "store_unavailable_total",
			Help: "Requests answered 503 because the session store (Redis, Caddy storage) could not be reached.",
		})),
		refreshes: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "caddy", Subsystem: "pkce_auth", Name: "refreshes_total",
			Help: "Token refreshes at the provider by result: succeeded, rejected (session ended), unavailable (provider unreachable).",
		}, []string{"result"})),
	}
	return m
}

// register adds c to reg, or returns the collector already registered under
// the same name (a config reload registers again).
func register[C prometheus.Collector](reg *prometheus.Registry, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

func (m *metrics) loginStarted()           { m.logins.WithLabelValues("started").Inc() }
func (m *metrics) loginSucceeded()         { m.logins.WithLabelValues("succeeded").Inc() }
func (m *metrics) loginFailed()            { m.logins.WithLabelValues("failed").Inc() }
func (m *metrics) loggedOut()              { m.logouts.Inc() }
func (m *metrics) providerUnavailable()    { m.unavailable.Inc() }
func (m *metrics) storeUnavailable()       { m.storeDown.Inc() }
func (m *metrics) refreshed(result string) { m.refreshes.WithLabelValues(result).Inc() }
