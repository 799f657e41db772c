package pkceauth

import (
	"context"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"go.uber.org/zap"
)

// eventEmitter emits Caddy events (pkce_login, pkce_login_failed,
// pkce_logout) that other modules can subscribe to with `events { on ... }`.
type eventEmitter struct {
	ctx caddy.Context
	app *caddyevents.App
}

func newEventEmitter(ctx caddy.Context, logger *zap.Logger) eventEmitter {
	app, err := ctx.App("events")
	if err != nil {
		logger.Debug("events app unavailable; no events will be emitted", zap.Error(err))
		return eventEmitter{}
	}
	events, _ := app.(*caddyevents.App)
	return eventEmitter{ctx: ctx, app: events}
}

func (e eventEmitter) emit(_ context.Context, name string, data map[string]any) {
	if e.app != nil {
		e.app.Emit(e.ctx, name, data)
	}
}
