package demoop

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// RecordedPath is where a Recorder serves what it saw, as a JSON array of
// [Entry]; `?since=N` returns only entries with Seq > N.
const RecordedPath = "/debug/recorded"

// Entry is one request the provider answered.
type Entry struct {
	Seq      int                 `json:"seq"`
	Time     time.Time           `json:"time"`
	Method   string              `json:"method"`
	Path     string              `json:"path"`
	Query    map[string][]string `json:"query,omitempty"`
	Form     map[string][]string `json:"form,omitempty"` // POST form body; passwords are redacted
	Status   int                 `json:"status"`
	Location string              `json:"location,omitempty"` // the redirect target, if any
}

// Recorder wraps a provider handler and keeps every request it answered, so
// a test can check what the relying party sent on the wire. It serves the
// log at RecordedPath. Use it on loopback test providers only: it keeps
// codes, verifiers and tokens.
type Recorder struct {
	next http.Handler

	mu      sync.Mutex
	entries []Entry
}

// NewRecorder wraps next.
func NewRecorder(next http.Handler) *Recorder {
	return &Recorder{next: next}
}

// Entries returns the entries with Seq > since.
func (rec *Recorder) Entries(since int) []Entry {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []Entry
	for _, e := range rec.entries {
		if e.Seq > since {
			out = append(out, e)
		}
	}
	return out
}

const maxRecordedBody = 1 << 20

func (rec *Recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == RecordedPath {
		since, _ := strconv.Atoi(r.URL.Query().Get("since"))
		entries := rec.Entries(since)
		if entries == nil {
			entries = []Entry{}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(entries)
		return
	}

	e := Entry{Time: time.Now(), Method: r.Method, Path: r.URL.Path}
	if q := r.URL.Query(); len(q) > 0 {
		e.Query = q
	}
	if r.Method == http.MethodPost && r.Body != nil {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxRecordedBody))
		if err == nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
			if form, err := url.ParseQuery(string(body)); err == nil && len(form) > 0 {
				if _, ok := form["password"]; ok {
					form.Set("password", "[redacted]")
				}
				e.Form = form
			}
		}
	}

	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	rec.next.ServeHTTP(sw, r)
	e.Status = sw.status
	e.Location = w.Header().Get("Location")

	rec.mu.Lock()
	e.Seq = len(rec.entries) + 1
	rec.entries = append(rec.entries, e)
	rec.mu.Unlock()
}

type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status = code
		w.wroteHeader = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
