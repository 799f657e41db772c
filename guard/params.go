package pkceguard

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
)

// bodyKind tells what requestParams found in the request body.
type bodyKind int

const (
	bodyNone      bodyKind = iota // no body, or a method whose body servers ignore
	bodyForm                      // application/x-www-form-urlencoded, read into the parameters
	bodyMultipart                 // multipart/form-data, not read
	bodyOther                     // any other content, not read
)

// requestParams returns the parameters of r as the upstream server may read
// them: those of the query and, for a form-encoded POST, PUT or PATCH body,
// those of the body, which it reads (at most maxFormBody bytes) and puts back
// for the next handler. A parameter present in both appears twice, which the
// callers refuse: the guard and the server must not disagree on a value.
// It fails on syntax that servers parse differently (`;` separators, bad
// percent-encoding) and on a body too large.
func requestParams(r *http.Request) (url.Values, bodyKind, error) {
	params, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, bodyNone, errors.New("the query string is malformed")
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return params, bodyNone, nil
	}
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		return params, bodyNone, nil
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case err != nil:
		return params, bodyOther, nil
	case mt == "multipart/form-data":
		return params, bodyMultipart, nil
	case mt != "application/x-www-form-urlencoded":
		return params, bodyOther, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxFormBody+1))
	if err != nil {
		return nil, bodyForm, fmt.Errorf("reading the request body: %w", err)
	}
	if len(body) > maxFormBody {
		return nil, bodyForm, fmt.Errorf("the form body is larger than %d bytes", maxFormBody)
	}
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, bodyForm, errors.New("the form body is malformed")
	}
	for k, vs := range form {
		params[k] = append(params[k], vs...)
	}
	return params, bodyForm, nil
}

// repeated returns the first of names that appears more than once in params
// (RFC 6749 §3.1: parameters must not be included more than once).
func repeated(params url.Values, names ...string) string {
	for _, n := range names {
		if len(params[n]) > 1 {
			return n
		}
	}
	return ""
}
