package admin

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/mxcont/mxcont/spool"
)

// Limits on the header section shown for a message.
const (
	headerPeek     = 64 << 10 // bytes of the body read
	maxHeaders     = 500
	maxHeaderValue = 8 << 10
)

// header is one header field in message order.
type header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// readHeaders parses the header section from the first 64 KiB of a
// message body. truncated reports that the section did not end within
// them (or had more than maxHeaders fields).
func (s *Server) readHeaders(id spool.ID) ([]header, bool, error) {
	r, err := s.deps.Spool.OpenBody(id)
	if err != nil {
		return nil, false, err
	}
	defer r.Close()
	buf := make([]byte, headerPeek)
	n, err := io.ReadFull(r, buf)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, false, err
	}
	hs, truncated := parseHeaders(buf[:n], n == headerPeek)
	return hs, truncated, nil
}

// parseHeaders splits an RFC 5322 header section into fields, unfolding
// continuation lines and decoding RFC 2047 encoded words. more says that
// b was cut short.
func parseHeaders(b []byte, more bool) ([]header, bool) {
	var out []header
	dec := mime.WordDecoder{}
	complete := false
	for len(b) > 0 {
		line := b
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if more {
				break // partial last line
			}
			b = nil
		} else {
			line, b = b[:i], b[i+1:]
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			complete = true
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(out) > 0 {
			h := &out[len(out)-1]
			if len(h.Value) < maxHeaderValue {
				h.Value += " " + string(bytes.TrimSpace(line))
			}
			continue
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
			// Not a header line: the body starts without a blank line.
			complete = true
			break
		}
		if len(out) == maxHeaders {
			return finish(out, &dec), true
		}
		out = append(out, header{Name: string(name), Value: string(bytes.TrimSpace(value))})
	}
	if len(b) == 0 && !more {
		complete = true
	}
	return finish(out, &dec), !complete
}

// finish caps and decodes the values and makes them valid UTF-8.
func finish(hs []header, dec *mime.WordDecoder) []header {
	if hs == nil {
		return []header{}
	}
	for i := range hs {
		v := hs[i].Value
		if len(v) > maxHeaderValue {
			v = v[:maxHeaderValue] + "…"
		}
		if strings.Contains(v, "=?") {
			if d, err := dec.DecodeHeader(v); err == nil {
				v = d
			}
		}
		hs[i].Name = strings.ToValidUTF8(hs[i].Name, "\uFFFD")
		if !utf8.ValidString(v) {
			v = strings.ToValidUTF8(v, "\uFFFD")
		}
		hs[i].Value = v
	}
	return hs
}
