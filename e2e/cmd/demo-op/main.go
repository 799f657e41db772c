// Command demo-op runs the demo OpenID provider (zitadel/oidc's certified
// `op` package with a demo user and a public PKCE client) on a loopback
// address, for `make demo` and the end-to-end tests.
//
//	demo-op -addr 127.0.0.1:9998 \
//	    -redirect-uri http://127.0.0.1:8080/oauth2/callback \
//	    -post-logout-redirect-uri http://127.0.0.1:8080/
//
// With -record it also serves what it saw at /debug/recorded (JSON), for tests.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/caddy-pkce/caddy-pkce/e2e/demoop"
)

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func main() {
	var (
		addr       = flag.String("addr", "127.0.0.1:9998", "loopback `host:port` to listen on")
		issuer     = flag.String("issuer", "", "issuer URL (default: http://<addr>)")
		clientID   = flag.String("client-id", "demo", "client ID of the public PKCE client")
		record     = flag.Bool("record", false, "record requests and serve them at "+demoop.RecordedPath+" (tests only)")
		logLevel   = flag.String("log-level", "info", "request log level: debug, info, warn or error")
		redirects  listFlag
		postLogout listFlag
	)
	flag.Var(&redirects, "redirect-uri", "redirect URI registered for the client (repeat or comma-separate)")
	flag.Var(&postLogout, "post-logout-redirect-uri", "post-logout redirect URI registered for the client (repeat or comma-separate)")
	flag.Parse()

	if err := run(*addr, *issuer, *clientID, redirects, postLogout, *record, *logLevel); err != nil {
		fmt.Fprintln(os.Stderr, "demo-op:", err)
		os.Exit(1)
	}
}

func run(addr, issuer, clientID string, redirects, postLogout []string, record bool, logLevel string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %v", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("-addr %q: the demo provider listens on loopback addresses only", addr)
	}
	if issuer == "" {
		issuer = "http://" + addr
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("-log-level: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	handler, err := demoop.New(demoop.Config{
		Issuer:                 issuer,
		ClientID:               clientID,
		RedirectURIs:           redirects,
		PostLogoutRedirectURIs: postLogout,
		Logger:                 logger,
	})
	if err != nil {
		return err
	}
	if record {
		handler = demoop.NewRecorder(handler)
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Printf("demo-op: issuer %s ready, client %q, user %q\n", issuer, clientID, demoop.DemoUser.Username)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
