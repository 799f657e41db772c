package pkceguard

import (
	"bytes"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// serveDiscovery passes a discovery document through with
// code_challenge_methods_supported set to the methods the guard allows, so
// clients that read it (RFC 8414 §2) use PKCE with an accepted method.
func (g *Guard) serveDiscovery(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// An uncompressed, unconditional answer can be rewritten.
	r.Header.Del("Accept-Encoding")
	r.Header.Del("If-None-Match")
	r.Header.Del("If-Modified-Since")

	buf := new(bytes.Buffer)
	rec := caddyhttp.NewResponseRecorder(w, buf, func(status int, h http.Header) bool {
		mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
		return status == http.StatusOK && h.Get("Content-Encoding") == "" &&
			(mt == "application/json" || mt == "application/jrd+json")
	})
	if err := next.ServeHTTP(rec, r); err != nil {
		return err
	}
	if !rec.Buffered() {
		return nil
	}
	out, err := advertiseMethods(buf.Bytes(), g.Methods)
	if err != nil {
		if c := g.logger.Check(zapcore.WarnLevel, "discovery document is not a JSON object; passed through unchanged"); c != nil {
			c.Write(zap.String("path", r.URL.Path), zap.Error(err))
		}
		out = buf.Bytes()
	}
	h := w.Header()
	h.Del("ETag")
	h.Del("Content-MD5")
	h.Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(rec.Status())
	_, err = w.Write(out)
	return err
}

// advertiseMethods sets code_challenge_methods_supported in a discovery
// document to methods, keeping every other member.
func advertiseMethods(doc []byte, methods []string) ([]byte, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(doc, &members); err != nil {
		return nil, err
	}
	if members == nil {
		return nil, errors.New("the document is null")
	}
	list, err := json.Marshal(methods)
	if err != nil {
		return nil, err
	}
	members["code_challenge_methods_supported"] = list
	return json.Marshal(members)
}
