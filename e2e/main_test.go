// Package e2e tests caddy-pkce the way a person uses it: a Caddy binary
// built with xcaddy (exactly as a user builds it), the demo OpenID provider
// (zitadel/oidc's certified `op` package) and Caddy running as separate
// processes on free loopback ports with demo/Caddyfile, and Debian's
// chromium, driven headless by chromedp, logging in.
//
// Environment:
//
//	E2E_CADDY     a Caddy binary built with the plugin (default: build
//	              one with `go tool xcaddy` into bin/caddy, as make does)
//	E2E_CHROMIUM  the browser (default: chromium on PATH)
//	CI            when "true", a missing browser fails the tests instead
//	              of skipping them
//
// On failure the tests save a screenshot and the HTML of every open tab
// under artifacts/<test>/, and the processes' logs are in artifacts/logs/.
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-pkce/caddy-pkce/e2e/demoop"
	"github.com/caddy-pkce/caddy-pkce/e2e/internal/proc"
)

const pluginModule = "github.com/caddy-pkce/caddy-pkce"

// stack is what TestMain started for every test in this package.
var stack struct {
	site     string // the demo site's origin, e.g. http://127.0.0.1:41234
	issuer   string // the provider's issuer, e.g. http://127.0.0.1:41235
	chromium string // the browser, or "" when it is missing outside CI
	caddyBin string // the Caddy built with the plugin
	repoRoot string
	logDir   string // where the processes' logs are
}

var artifactsDir string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	flag.Parse()
	if f := flag.Lookup("test.list"); f != nil && f.Value.String() != "" {
		return m.Run() // listing the tests needs no servers
	}
	var err error
	if artifactsDir, err = filepath.Abs("artifacts"); err != nil {
		return fatalMain(err)
	}
	if stack.repoRoot, err = filepath.Abs(".."); err != nil {
		return fatalMain(err)
	}
	stack.logDir = filepath.Join(artifactsDir, "logs")
	if err := os.MkdirAll(stack.logDir, 0o755); err != nil {
		return fatalMain(err)
	}

	stack.chromium = findChromium()
	if stack.chromium == "" && os.Getenv("CI") == "true" {
		return fatalMain(errors.New("chromium is not installed; CI must run the browser tests (.ci/run installs it with apt-get)"))
	}

	if stack.caddyBin, err = caddyBinary(); err != nil {
		return fatalMain(err)
	}
	opBin, err := buildDemoOP()
	if err != nil {
		return fatalMain(err)
	}

	ports, err := freePorts(2)
	if err != nil {
		return fatalMain(err)
	}
	stack.site = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	stack.issuer = fmt.Sprintf("http://127.0.0.1:%d", ports[1])

	op, err := proc.Start("demo-op", filepath.Join(stack.logDir, "demo-op.log"), nil, opBin,
		"-addr", strings.TrimPrefix(stack.issuer, "http://"),
		"-record",
		"-redirect-uri", stack.site+"/oauth2/callback",
		"-post-logout-redirect-uri", stack.site+"/")
	if err != nil {
		return fatalMain(err)
	}
	defer op.Stop()
	if err := op.WaitHTTP(context.Background(), stack.issuer+"/.well-known/openid-configuration", 15*time.Second); err != nil {
		return fatalMain(err)
	}

	caddy, err := startCaddy(filepath.Join(stack.repoRoot, "demo", "Caddyfile"), "caddy",
		"DEMO_PORT="+strconv.Itoa(ports[0]),
		"DEMO_ISSUER="+stack.issuer,
		"DEMO_SITE_ROOT="+filepath.Join(stack.repoRoot, "demo", "site"))
	if err != nil {
		return fatalMain(err)
	}
	defer caddy.Stop()
	if err := caddy.WaitHTTP(context.Background(), stack.site+"/public/", 30*time.Second); err != nil {
		return fatalMain(err)
	}

	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "e2e: the provider's and Caddy's logs are in %s\n", stack.logDir)
	}
	return code
}

func fatalMain(err error) int {
	fmt.Fprintln(os.Stderr, "e2e:", err)
	return 1
}

func findChromium() string {
	if p := os.Getenv("E2E_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// caddyBinary returns E2E_CADDY, or builds Caddy with the plugin from the
// repository root with xcaddy, at the Caddy version the plugin's go.mod
// requires, as a user would with `xcaddy build --with`.
func caddyBinary() (string, error) {
	if p := os.Getenv("E2E_CADDY"); p != "" {
		return filepath.Abs(p)
	}
	version, err := caddyVersion(filepath.Join(stack.repoRoot, "go.mod"))
	if err != nil {
		return "", err
	}
	out, err := filepath.Abs(filepath.Join("bin", "caddy"))
	if err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "e2e: building Caddy %s with the plugin (xcaddy)...\n", version)
	// The zero pseudo-version marks the plugin as a local replacement (see
	// the Makefile's caddy target).
	with := pluginModule + "@v0.0.0-00010101000000-000000000000=" + stack.repoRoot
	cmd := exec.Command("go", "tool", "xcaddy", "build", version, "--output", out, "--with", with)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("xcaddy build: %v", err)
	}
	return out, nil
}

// caddyVersion reads the Caddy version the plugin requires.
func caddyVersion(goMod string) (string, error) {
	b, err := os.ReadFile(goMod)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		if len(f) >= 2 && f[0] == "github.com/caddyserver/caddy/v2" {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("%s does not require github.com/caddyserver/caddy/v2", goMod)
}

func buildDemoOP() (string, error) {
	out, err := filepath.Abs(filepath.Join("bin", "demo-op"))
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-o", out, "./cmd/demo-op")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building demo-op: %v", err)
	}
	return out, nil
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// startCaddy runs `caddy run` with a Caddyfile and its own, empty storage;
// env is KEY=value. The name names its log file.
func startCaddy(caddyfile, name string, env ...string) (*proc.Process, error) {
	home, err := os.MkdirTemp("", "e2e-caddy-")
	if err != nil {
		return nil, err
	}
	env = append(env, "XDG_DATA_HOME="+filepath.Join(home, "data"), "XDG_CONFIG_HOME="+filepath.Join(home, "config"))
	p, err := proc.Start(name, filepath.Join(stack.logDir, name+".log"), env, stack.caddyBin,
		"run", "--config", caddyfile, "--adapter", "caddyfile")
	if err != nil {
		os.RemoveAll(home)
		return nil, err
	}
	go func() { <-p.Done(); os.RemoveAll(home) }()
	return p, nil
}

// opRecorded returns what the provider saw after entry seq `since`.
func opRecorded(t *testing.T, since int) []demoop.Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, stack.issuer+demoop.RecordedPath+"?since="+strconv.Itoa(since), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("reading the provider's record: %v", err)
	}
	defer resp.Body.Close()
	var entries []demoop.Entry
	if err := json.NewDecoder(resp.Body).Decode(&entries); err != nil {
		t.Fatalf("reading the provider's record: %v", err)
	}
	return entries
}

// opMark returns the provider's last entry seq, to read only what follows.
func opMark(t *testing.T) int {
	t.Helper()
	entries := opRecorded(t, 0)
	if len(entries) == 0 {
		return 0
	}
	return entries[len(entries)-1].Seq
}

// opPath returns the path of the provider's endpoint named in discovery
// (authorization_endpoint, token_endpoint, end_session_endpoint...).
func opPath(t *testing.T, endpoint string) string {
	t.Helper()
	resp, err := http.Get(stack.issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	s, _ := doc[endpoint].(string)
	u, err := url.Parse(s)
	if err != nil || s == "" {
		t.Fatalf("discovery has no %s", endpoint)
	}
	return u.Path
}
