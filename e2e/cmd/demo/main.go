// Command demo runs the caddy-pkce demo: the demo OpenID provider and a
// Caddy built with the plugin, each as its own process on 127.0.0.1, with
// demo/Caddyfile protecting demo/site. `make demo` builds everything and
// runs it from the repository root. Ctrl-C stops both processes.
//
// Environment:
//
//	DEMO_PORT     the site's port     (default 8080)
//	DEMO_OP_PORT  the provider's port (default 9998)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/caddy-pkce/caddy-pkce/e2e/demoop"
	"github.com/caddy-pkce/caddy-pkce/e2e/internal/proc"
)

func main() {
	var (
		caddyBin  = flag.String("caddy", "e2e/bin/caddy", "the Caddy binary built with the plugin")
		opBin     = flag.String("op", "e2e/bin/demo-op", "the demo OpenID provider binary")
		caddyfile = flag.String("caddyfile", "demo/Caddyfile", "the demo Caddyfile")
		siteRoot  = flag.String("site", "demo/site", "the static site to protect")
		workDir   = flag.String("data", "e2e/bin/demo-data", "folder for logs and Caddy's storage")
	)
	flag.Parse()
	if err := run(*caddyBin, *opBin, *caddyfile, *siteRoot, *workDir); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(caddyBin, opBin, caddyfile, siteRoot, dataDir string) error {
	sitePort, err := portFromEnv("DEMO_PORT", 8080)
	if err != nil {
		return err
	}
	opPort, err := portFromEnv("DEMO_OP_PORT", 9998)
	if err != nil {
		return err
	}
	if sitePort == opPort {
		return fmt.Errorf("DEMO_PORT and DEMO_OP_PORT are both %d; give them different values", sitePort)
	}
	if err := checkFree(sitePort, "DEMO_PORT"); err != nil {
		return err
	}
	if err := checkFree(opPort, "DEMO_OP_PORT"); err != nil {
		return err
	}
	for _, f := range []string{caddyBin, opBin, caddyfile, siteRoot} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%v (run it with `make demo` from the repository root)", err)
		}
	}
	absSite, err := filepath.Abs(siteRoot)
	if err != nil {
		return err
	}
	absData, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(absData, 0o700); err != nil {
		return err
	}

	site := fmt.Sprintf("http://127.0.0.1:%d", sitePort)
	issuer := fmt.Sprintf("http://127.0.0.1:%d", opPort)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	op, err := proc.Start("provider", filepath.Join(absData, "op.log"), nil, opBin,
		"-addr", fmt.Sprintf("127.0.0.1:%d", opPort),
		"-issuer", issuer,
		"-redirect-uri", site+"/oauth2/callback",
		"-post-logout-redirect-uri", site+"/")
	if err != nil {
		return err
	}
	defer op.Stop()
	if err := op.WaitHTTP(ctx, issuer+"/.well-known/openid-configuration", 15*time.Second); err != nil {
		return err
	}

	caddy, err := proc.Start("caddy", filepath.Join(absData, "caddy.log"), []string{
		"DEMO_PORT=" + strconv.Itoa(sitePort),
		"DEMO_ISSUER=" + issuer,
		"DEMO_SITE_ROOT=" + absSite,
		// Caddy keeps its storage (the generated session key) here,
		// not in the user's home folder.
		"XDG_DATA_HOME=" + filepath.Join(absData, "data"),
		"XDG_CONFIG_HOME=" + filepath.Join(absData, "config"),
	}, caddyBin, "run", "--config", caddyfile, "--adapter", "caddyfile")
	if err != nil {
		return err
	}
	defer caddy.Stop()
	if err := caddy.WaitHTTP(ctx, site+"/public/", 30*time.Second); err != nil {
		return err
	}

	rel := func(p string) string {
		if wd, err := os.Getwd(); err == nil {
			if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
				return r
			}
		}
		return p
	}
	fmt.Printf(`
caddy-pkce demo is running.

  Open       %s/
  Log in as  user %q, password %q
  Provider   %s (zitadel/oidc, public client "demo", PKCE S256)
  Logs       %s, %s

Press Ctrl-C to stop.
`, site, demoop.DemoUser.Username, demoop.DemoUser.Password, issuer,
		rel(caddy.LogPath), rel(op.LogPath))

	select {
	case <-ctx.Done():
		fmt.Println("\nStopping Caddy and the provider...")
		caddy.Stop()
		op.Stop()
		fmt.Println("Stopped.")
		return nil
	case <-caddy.Done():
		return caddy.ExitError()
	case <-op.Done():
		return op.ExitError()
	}
}

func portFromEnv(name string, def int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	p, err := strconv.Atoi(v)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("%s=%q is not a port number (1-65535)", name, v)
	}
	return p, nil
}

// checkFree reports a clear error when something already listens on the port.
func checkFree(port int, env string) error {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			err = errno
		}
		return fmt.Errorf("port %d on 127.0.0.1 is busy (%v).\nStop whatever uses it, or choose another port: %s=%d make demo",
			port, err, env, port+1)
	}
	return ln.Close()
}
