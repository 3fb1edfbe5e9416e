package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/kmsbackup/kmsbackup/domain"
)

// Long operations answer with their progress when the client asks for it
// with "Accept: application/x-ndjson": the answer is then a stream of
// StreamLine, one JSON document a line: progress lines while the work goes
// on, then the result or the error. Without that header they answer one
// JSON document when done, as every other route.

// ndjsonType is the media type of a streamed answer.
const ndjsonType = "application/x-ndjson"

// StreamLine is one line of a streamed answer: exactly one of Progress,
// Result and Error.
type StreamLine[P, R any] struct {
	Progress *P           `json:"progress,omitempty"`
	Result   *R           `json:"result,omitempty"`
	Error    *ErrorDetail `json:"error,omitempty"`
}

// wantsNDJSON reports whether the request asks for a streamed answer.
func wantsNDJSON(r *http.Request) bool {
	for _, a := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(a, ",") {
			if mt, _, _ := strings.Cut(strings.TrimSpace(part), ";"); strings.EqualFold(mt, ndjsonType) {
				return true
			}
		}
	}
	return false
}

// ndjsonWriter writes a streamed answer. Until its first line the answer
// is undecided, so that a request refused before any progress is answered
// with its status code (the handler returns the error); after it, the
// status is 200 and an error is a line. Not safe for concurrent use.
type ndjsonWriter struct {
	w       http.ResponseWriter
	enc     *json.Encoder
	started bool
}

// line writes v as one line and flushes it to the client. A client gone
// stops reading; the work goes on.
func (st *ndjsonWriter) line(v any) {
	if !st.started {
		st.started = true
		st.w.Header().Set("Content-Type", ndjsonType)
		st.w.Header().Set("Cache-Control", "no-store")
		st.w.WriteHeader(http.StatusOK)
		st.enc = json.NewEncoder(st.w)
	}
	_ = st.enc.Encode(v)
	if f, ok := st.w.(http.Flusher); ok {
		f.Flush()
	}
}

// finish ends a streamed answer with the work's outcome and returns what
// the handler returns: the error or the result itself when no line was
// written yet (a plain answer), else streamed.
func finish[P, R any](st *ndjsonWriter, res R, err error) (any, error) {
	switch {
	case st == nil || !st.started:
		if err != nil {
			return nil, err
		}
		return res, nil
	case err != nil:
		_, body := errorBody(err)
		st.line(StreamLine[P, R]{Error: &body.Error})
	default:
		st.line(StreamLine[P, R]{Result: &res})
	}
	return streamed, nil
}

// doStream sends a JSON request asking for a streamed answer and calls
// progress with each progress line, then returns the result, or the error
// line as an *APIError. A server that answers with one JSON document gives
// no progress. An answer that ends before its result is
// domain.ErrUnavailable, with cut as its hint (what to do about work that
// may be half done).
func doStream[P, R any](ctx context.Context, c *Client, method, path string, query url.Values, body any, progress func(P), cut string) (R, error) {
	op := method + " " + path
	var out R
	b, err := json.Marshal(body)
	if err != nil {
		return out, fmt.Errorf("encode request: %w", err)
	}
	hdr := http.Header{}
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Accept", ndjsonType+", application/json;q=0.5")
	resp, err := c.send(ctx, method, path, query, bytes.NewReader(b), hdr)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	if ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";"); ct != ndjsonType {
		if err := dec.Decode(&out); err != nil {
			return out, fmt.Errorf("%s: decode response: %w", op, err)
		}
		return out, nil
	}
	for {
		var l StreamLine[P, R]
		if err := dec.Decode(&l); err != nil {
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			return out, domain.Errorf(domain.ErrUnavailable, op, "", cut, "the answer ended before the result: %v", err)
		}
		switch {
		case l.Error != nil:
			return out, &APIError{Status: statusOf(l.Error.Code), ErrorDetail: *l.Error}
		case l.Result != nil:
			return *l.Result, nil
		case l.Progress != nil && progress != nil:
			progress(*l.Progress)
		}
	}
}
