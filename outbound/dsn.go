package outbound

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mxcont/mxcont/spool"
)

// maxDSNHeader bounds the original header section quoted in a DSN.
const maxDSNHeader = 64 << 10

// originalHeader returns the header section of a queued message (CRLF
// line endings, without the blank line), cut at a line boundary after
// maxDSNHeader bytes.
func (q *Queue) originalHeader(id spool.ID) ([]byte, error) {
	r, err := q.sp.OpenBody(id)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return readHeader(r, maxDSNHeader)
}

// readHeader reads lines up to the blank line that ends the header
// section (or the end of the message, or limit bytes).
func readHeader(r io.Reader, limit int) ([]byte, error) {
	br := bufio.NewReaderSize(r, 4096)
	var out []byte
	for len(out) < limit {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A very long line: keep what fits and skip the rest of it.
			out = append(out, line...)
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			out = append(out, '\r', '\n')
		} else {
			if strings.TrimRight(string(line), "\r\n") == "" && len(line) > 0 {
				break
			}
			out = append(out, line...)
		}
		if err == io.EOF {
			if len(out) > 0 && out[len(out)-1] != '\n' {
				out = append(out, '\r', '\n')
			}
			break
		}
		if err != nil {
			return out, err
		}
	}
	return fixLineEnds(out), nil
}

// fixLineEnds makes every line end in CRLF.
func fixLineEnds(b []byte) []byte {
	s := strings.ReplaceAll(string(b), "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return []byte(strings.ReplaceAll(s, "\n", "\r\n"))
}

// dsnInput is what a DSN is made of.
type dsnInput struct {
	hostname string
	msg      *spool.Message
	failed   []rcptFailure
	header   []byte // the original header section, CRLF lines
	now      time.Time
}

// buildDSN returns a delivery status notification (RFC 3464, a
// multipart/report of RFC 6522) for the failed recipients of msg,
// addressed to its sender, quoting the original header section.
func buildDSN(in dsnInput) []byte {
	boundary := randomToken(12) + "/" + in.hostname
	date := in.now.Format(time.RFC1123Z)
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\r\n", a...) }

	w("From: Mail Delivery System <MAILER-DAEMON@%s>", in.hostname)
	w("To: <%s>", headerSafe(in.msg.From))
	w("Subject: Undelivered Mail Returned to Sender")
	w("Date: %s", date)
	w("Message-ID: <%s.dsn@%s>", randomToken(16), in.hostname)
	w("Auto-Submitted: auto-replied")
	w("MIME-Version: 1.0")
	w("Content-Type: multipart/report; report-type=delivery-status;")
	w("\tboundary=\"%s\"", boundary)
	w("")
	w("This is a MIME-encapsulated message.")
	w("")

	w("--%s", boundary)
	w("Content-Type: text/plain; charset=utf-8")
	w("Content-Description: Notification")
	w("")
	w("This is the mail system at host %s.", in.hostname)
	w("")
	w("Your message could not be delivered to one or more recipients.")
	w("It has not been sent to the recipients listed below and will not be")
	w("retried. The reason given for each recipient follows.")
	w("")
	for _, f := range in.failed {
		w("<%s>: %s", headerSafe(in.msg.Rcpts[f.idx]), headerSafe(diagText(f.diag)))
	}
	w("")

	w("--%s", boundary)
	w("Content-Type: message/delivery-status")
	w("Content-Description: Delivery report")
	w("")
	w("Reporting-MTA: dns; %s", in.hostname)
	w("X-Mxcont-Queue-ID: %s", in.msg.ID)
	w("Arrival-Date: %s", in.msg.ReceivedAt.Format(time.RFC1123Z))
	for _, f := range in.failed {
		w("")
		w("Final-Recipient: %s", addrType(in.msg.Rcpts[f.idx]))
		w("Action: failed")
		w("Status: %s", f.status)
		if f.remote != "" {
			w("Remote-MTA: dns; %s", headerSafe(f.remote))
		}
		w("Diagnostic-Code: %s", headerSafe(f.diag))
		w("Last-Attempt-Date: %s", date)
	}
	w("")

	w("--%s", boundary)
	w("Content-Type: text/rfc822-headers")
	w("Content-Description: Undelivered message headers")
	w("")
	b.Write(in.header)
	w("")
	w("--%s--", boundary)
	return []byte(b.String())
}

// addrType renders a Final-Recipient value: rfc822 for ASCII addresses,
// utf-8 (RFC 6533) otherwise.
func addrType(a string) string {
	for i := 0; i < len(a); i++ {
		if a[i] >= 0x80 {
			return "utf-8; " + headerSafe(a)
		}
	}
	return "rfc822; " + headerSafe(a)
}

// diagText is the human part of a Diagnostic-Code ("smtp; 550 ..." →
// "550 ...").
func diagText(d string) string {
	if _, rest, ok := strings.Cut(d, "; "); ok {
		return rest
	}
	return d
}

// headerSafe keeps s on one line of printable characters, at most 900
// bytes, so that it cannot break the DSN's structure.
func headerSafe(s string) string {
	s = oneLine(s)
	if len(s) > 900 {
		s = s[:900]
	}
	return s
}

// oneLine replaces control characters (CR and LF included) with spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
