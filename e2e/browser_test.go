package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// stepTimeout bounds every browser step (a navigation, a login...).
const stepTimeout = 20 * time.Second

// browser is a headless chromium with a fresh profile, closed when the test
// ends. When the test fails, every tab's screenshot and HTML are saved under
// artifacts/<test>/ first.
type browser struct {
	t       *testing.T
	ctx     context.Context // the first tab; new tabs open beside it
	mu      sync.Mutex
	tabs    []*tab
	cancels []context.CancelFunc // closes the tabs, then the browser
}

// tab is one browser tab.
type tab struct {
	t    *testing.T
	name string
	ctx  context.Context
}

// newBrowser starts chromium for this test, or skips the test when there is
// no chromium outside CI.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	if stack.chromium == "" {
		t.Skip("chromium is not installed (apt-get install chromium); set CI=true to make this a failure")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(stack.chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1024, 768),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	b := &browser{t: t, ctx: ctx, cancels: []context.CancelFunc{cancelAlloc, cancelTab}}
	t.Cleanup(func() {
		if t.Failed() {
			b.saveArtifacts()
		}
		for i := len(b.cancels) - 1; i >= 0; i-- {
			b.cancels[i]()
		}
	})
	// The first Run starts the browser; it must not carry a timeout, which
	// would kill the browser when it expires.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", stack.chromium, err)
	}
	b.tabs = append(b.tabs, &tab{t: t, name: "tab1", ctx: ctx})
	return b
}

// tab returns the first tab.
func (b *browser) tab() *tab { return b.tabs[0] }

// newTab opens another tab in the same browser (same cookies).
func (b *browser) newTab() *tab {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.mu.Lock()
	b.cancels = append(b.cancels, cancel)
	tb := &tab{t: b.t, name: fmt.Sprintf("tab%d", len(b.tabs)+1), ctx: ctx}
	b.tabs = append(b.tabs, tb)
	b.mu.Unlock()
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("opening a tab: %v", err)
	}
	return tb
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// saveArtifacts writes each tab's screenshot and HTML and says where.
func (b *browser) saveArtifacts() {
	dir := filepath.Join(artifactsDir, unsafeName.ReplaceAllString(b.t.Name(), "_"))
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Logf("cannot save artifacts: %v", err)
		return
	}
	for _, tb := range b.tabs {
		ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		if err != nil {
			b.t.Logf("%s: cannot read the page's HTML: %v", tb.name, err)
		} else {
			_ = os.WriteFile(filepath.Join(dir, tb.name+".html"), []byte("<!-- "+loc+" -->\n"+html), 0o644)
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			b.t.Logf("%s: cannot take a screenshot: %v", tb.name, err)
		} else {
			_ = os.WriteFile(filepath.Join(dir, tb.name+".png"), png, 0o644)
		}
		cancel()
		b.t.Logf("%s was at %s", tb.name, loc)
	}
	b.t.Logf("screenshots and page HTML saved in %s (logs in %s)", dir, stack.logDir)
}

// do runs browser steps within stepTimeout, failing the test with what was
// being done.
func (tb *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tb.t.Fatalf("%s: %s: %v (page: %s)", tb.name, what, err, tb.location())
	}
}

// get runs one browser action within stepTimeout and returns its value.
func get[T any](tb *tab, what string, action chromedp.Action[T]) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, action)
	if err != nil {
		tb.t.Fatalf("%s: %s: %v (page: %s)", tb.name, what, err, tb.location())
	}
	return v
}

// location returns the tab's current URL.
func (tb *tab) location() string {
	ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "unknown: " + err.Error()
	}
	return loc
}

// open navigates like typing the URL in the address bar.
func (tb *tab) open(url string) {
	tb.t.Helper()
	tb.do("opening "+url, chromedp.Navigate(url))
}

// waitURL waits until the tab's URL satisfies ok.
func (tb *tab) waitURL(desc string, ok func(string) bool) string {
	tb.t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for {
		loc := tb.location()
		if ok(loc) {
			return loc
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("%s: waited %s for %s; the page is still %s", tb.name, stepTimeout, desc, loc)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// onLoginForm reports whether the URL is the provider's login form.
func onLoginForm(u string) bool { return strings.HasPrefix(u, stack.issuer+"/login/") }

// waitLoginForm waits for the provider's login form.
func (tb *tab) waitLoginForm() {
	tb.t.Helper()
	tb.waitURL("the provider's login form", onLoginForm)
	tb.do("waiting for the login form", chromedp.WaitVisible(chromedp.ID("username")), chromedp.WaitVisible(chromedp.ID("password")))
}

// waitLoaded waits until the page has loaded with its stylesheets, so that a
// click lands where the element finally is, as a person's would.
func (tb *tab) waitLoaded() {
	tb.t.Helper()
	if err := waitLoaded(tb); err != nil {
		tb.t.Fatal(err)
	}
}

func waitLoaded(tb *tab) error {
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	for {
		state, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.readyState`))
		if err == nil && state == "complete" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: the page did not finish loading (%v, readyState %q)", tb.name, err, state)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// click clicks the element with the id once the page has loaded.
func (tb *tab) click(id string) {
	tb.t.Helper()
	tb.waitLoaded()
	tb.do("clicking #"+id, chromedp.Click(chromedp.ID(id), chromedp.NodeVisible))
}

// typeCredentials fills in the provider's login form and submits it, as a
// person would.
func (tb *tab) typeCredentials(user, password string) {
	tb.t.Helper()
	tb.waitLoaded()
	tb.do("typing the credentials",
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`), chromedp.NodeVisible),
	)
}

// text returns the visible text of the element with the id.
func (tb *tab) text(id string) string {
	tb.t.Helper()
	tb.do("waiting for #"+id, chromedp.WaitVisible(chromedp.ID(id)))
	return strings.TrimSpace(get(tb, "reading #"+id, chromedp.Text(chromedp.ID(id))))
}

// cookies returns the browser's cookies for the demo site, by name.
func (tb *tab) cookies() map[string]*network.Cookie {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{stack.site + "/"}})
	if err != nil {
		tb.t.Fatalf("%s: reading cookies: %v", tb.name, err)
	}
	m := map[string]*network.Cookie{}
	for _, c := range res.Cookies {
		m[c.Name] = c
	}
	return m
}

// setCookie replaces a cookie of the demo site.
func (tb *tab) setCookie(c *network.Cookie, value string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	_, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{
		Name: c.Name, Value: value, Domain: c.Domain, Path: c.Path,
		HTTPOnly: &c.HTTPOnly, Secure: &c.Secure, SameSite: c.SameSite,
	})
	if err != nil {
		tb.t.Fatalf("%s: setting cookie %s: %v", tb.name, c.Name, err)
	}
}

// fetchResult is what a page's fetch() saw.
type fetchResult struct {
	Status          int    `json:"status"`
	Redirected      bool   `json:"redirected"`
	URL             string `json:"url"`
	WWWAuthenticate string `json:"wwwAuthenticate"`
	ContentType     string `json:"contentType"`
	Error           string `json:"error"`
}

// fetch runs fetch(path) in the page, as a script on the page would.
func (tb *tab) fetch(path string) fetchResult {
	tb.t.Helper()
	js := fmt.Sprintf(`fetch(%q, {credentials: "same-origin"}).then(
		r => ({status: r.status, redirected: r.redirected, url: r.url,
		       wwwAuthenticate: r.headers.get("WWW-Authenticate") || "",
		       contentType: r.headers.get("Content-Type") || ""}),
		e => ({error: String(e)}))`, path)
	return get(tb, "fetch("+path+")", chromedp.Evaluate[fetchResult](js, chromedp.EvalAwaitPromise))
}

// chromeDo runs steps in a tab and returns the error, for use off the test's
// goroutine.
func chromeDo(tb *tab, steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		return fmt.Errorf("%s: %w", tb.name, err)
	}
	return nil
}

// parallel runs f(0..n-1) at the same time and fails the test if any failed.
func parallel(t *testing.T, what string, f func(i int) error, n int) {
	t.Helper()
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- f(i) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
}
