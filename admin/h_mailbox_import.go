package admin

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/admin/events"
	"github.com/mxcont/mxcont/engine/registry"
	"github.com/mxcont/mxcont/mailbox"
)

// Limits of one CSV import. Each new user costs an argon2id hash (about
// 40 ms with the default costs), so a full import takes well under a
// minute on one core; the portal splits bigger files into several
// requests.
const (
	maxImportBytes = 1 << 20
	maxImportLines = 1000
)

// importResult is the answer to a CSV import.
type importResult struct {
	Created int             `json:"created"`
	Failed  []importFailure `json:"failed"`
}

// importFailure is one line that was not imported. Address is empty when
// the line has no valid address (it may hold a password instead).
type importFailure struct {
	Line    int    `json:"line"`
	Address string `json:"address"`
	Error   string `json:"error"`
}

// importRow is one data line of the CSV body.
type importRow struct {
	line              int
	cols              int
	address, password string
	err               string // why the line is not CSV
}

// errImportStopped marks the lines not tried after an internal error.
var errImportStopped = errors.New("not imported: the import stopped after an internal error")

// handleImportMailboxes creates the mailbox users listed in a text/csv
// body, one "address,password" per line: an "address,password" header line
// (columns in either order) is optional, surrounding spaces are removed,
// and a first line with semicolons and no comma makes ";" the separator
// (spreadsheets in many locales). It answers 200 with the number created
// and the lines that failed; 400 for an empty body or a bad header, 413
// above maxImportBytes or maxImportLines, 429 while another import runs;
// nothing is created then.
func (s *Server) handleImportMailboxes(ctx *fasthttp.RequestCtx, p *principal) {
	d, ok := s.mailboxDomain(ctx, p)
	if !ok || !requireBoth(ctx, d) {
		return
	}
	body := ctx.PostBody()
	if len(body) > maxImportBytes {
		writeError(ctx, fasthttp.StatusRequestEntityTooLarge,
			fmt.Sprintf("CSV body larger than %d bytes; split the file", maxImportBytes), "")
		return
	}
	rows, status, msg := parseImport(body)
	if status != 0 {
		writeError(ctx, status, msg, "")
		return
	}
	select {
	case s.imports <- struct{}{}:
		defer func() { <-s.imports }()
	default:
		ctx.Response.Header.Set("Retry-After", "10")
		writeError(ctx, fasthttp.StatusTooManyRequests, "another mailbox import is running; try again when it has finished", "")
		return
	}
	res := s.importRows(ctx, p, d, rows)
	s.log.Info("mailboxes imported", zap.String("domain", d.Name), zap.String("actor", p.actor()),
		zap.Int("created", res.Created), zap.Int("failed", len(res.Failed)))
	writeJSON(ctx, fasthttp.StatusOK, res)
}

// parseImport reads the CSV body. Neither an address nor a password can
// hold a line break, so each line is one record, parsed on its own: a
// stray quote spoils its line only, never the lines after it. On failure
// it returns the status and message to answer; the message never quotes
// the body.
func parseImport(body []byte) ([]importRow, int, string) {
	body = bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")) // spreadsheets write a BOM
	addrCol, passCol := 0, 1
	var rows []importRow
	first, comma := true, ','
	for i, raw := range bytes.Split(body, []byte("\n")) {
		line := string(bytes.TrimSuffix(raw, []byte("\r")))
		if strings.TrimSpace(line) == "" {
			continue
		}
		if first && strings.Contains(line, ";") && !strings.Contains(line, ",") {
			comma = ';'
		}
		rec, err := parseCSVLine(line, comma)
		if first {
			first = false
			if err == nil && isImportHeader(rec) {
				h := normalizeHeader(rec)
				a := slices.Index(h, "address")
				if len(h) != 2 || a < 0 || !slices.Contains(h, "password") {
					return nil, fasthttp.StatusBadRequest, fmt.Sprintf("CSV line %d: the header must name the columns address,password", i+1)
				}
				addrCol, passCol = a, 1-a
				continue
			}
		}
		if len(rows) == maxImportLines {
			return nil, fasthttp.StatusRequestEntityTooLarge,
				fmt.Sprintf("more than %d lines; split the file (nothing was imported)", maxImportLines)
		}
		row := importRow{line: i + 1, cols: len(rec)}
		switch {
		case err != nil:
			row.err = err.Error()
		case len(rec) == 2:
			row.address, row.password = strings.TrimSpace(rec[addrCol]), strings.TrimSpace(rec[passCol])
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return nil, fasthttp.StatusBadRequest, "no mailboxes in the CSV body; want one address,password per line"
	}
	return rows, 0, ""
}

// parseCSVLine splits one line into fields. Quotes inside an unquoted field
// are kept as they are (passwords may contain them); a quoted field must
// be closed properly. Errors do not quote the line.
func parseCSVLine(line string, comma rune) ([]string, error) {
	read := func(lazy bool) ([]string, error) {
		r := csv.NewReader(strings.NewReader(line))
		r.Comma, r.FieldsPerRecord, r.LazyQuotes = comma, -1, lazy
		return r.Read()
	}
	rec, err := read(false)
	if errors.Is(err, csv.ErrBareQuote) {
		rec, err = read(true)
	}
	if err != nil {
		why := "malformed CSV"
		if errors.Is(err, csv.ErrQuote) {
			why = `malformed CSV: a quoted field must end with " (write "" for a quote inside it)`
		}
		return nil, errors.New(why)
	}
	return rec, nil
}

func normalizeHeader(rec []string) []string {
	out := make([]string, len(rec))
	for i, f := range rec {
		out[i] = strings.ToLower(strings.TrimSpace(f))
	}
	return out
}

// isImportHeader reports whether the first record is a header line: it
// names a column "address" or "password".
func isImportHeader(rec []string) bool {
	h := normalizeHeader(rec)
	return slices.Contains(h, "address") || slices.Contains(h, "password")
}

// importWorkers is how many users an import creates at once: hashing
// passwords is CPU-bound, and the node must keep serving SMTP meanwhile.
func importWorkers() int { return max(1, min(4, runtime.GOMAXPROCS(0)/2)) }

// importRows checks the rows and creates the users of the valid ones.
func (s *Server) importRows(ctx *fasthttp.RequestCtx, p *principal, d registry.Domain, rows []importRow) importResult {
	res := importResult{Failed: []importFailure{}}
	fail := func(line int, addr, msg string) {
		res.Failed = append(res.Failed, importFailure{Line: line, Address: addr, Error: msg})
	}
	seen := make(map[string]int, len(rows))
	var todo []importRow
	for _, r := range rows {
		if r.err != "" {
			fail(r.line, "", r.err)
			continue
		}
		if r.cols != 2 {
			fail(r.line, "", fmt.Sprintf("want 2 columns (address,password), got %d", r.cols))
			continue
		}
		if status, msg := checkAddress(r.address, d.Name); status != 0 {
			echo := ""
			if status == fasthttp.StatusUnprocessableEntity { // a valid address, of another domain
				echo = sanitize(truncate(r.address, 320))
			}
			fail(r.line, echo, msg)
			continue
		}
		if r.password == "" {
			fail(r.line, r.address, "password: is required")
			continue
		}
		at := strings.LastIndexByte(r.address, '@')
		key := strings.ToLower(r.address[:at]) + "@" + d.Name
		if first, dup := seen[key]; dup {
			fail(r.line, r.address, fmt.Sprintf("address: already on line %d", first))
			continue
		}
		seen[key] = r.line
		todo = append(todo, r)
	}

	errs := make([]error, len(todo))
	users := make([]mailbox.User, len(todo))
	var stop atomic.Bool
	parallel(len(todo), importWorkers(), func(i int) {
		if stop.Load() {
			errs[i] = errImportStopped
			return
		}
		users[i], errs[i] = s.addMailbox(ctx, d, todo[i].address, todo[i].password)
		if err := errs[i]; err != nil && !errors.Is(err, mailbox.ErrInvalid) && !errors.Is(err, mailbox.ErrExists) {
			stop.Store(true)
		}
	})
	logged := false
	for i, err := range errs {
		r := todo[i]
		switch {
		case err == nil:
			res.Created++
			s.events.Record(events.Event{Type: events.MailboxCreated, Actor: p.actor(), Domain: d.Name, Account: d.Account,
				Detail: "mailbox " + users[i].Address + " (CSV import)"})
		case errors.Is(err, mailbox.ErrInvalid):
			msg, _ := invalidMessage(err, r.password)
			fail(r.line, r.address, msg)
		case errors.Is(err, mailbox.ErrExists):
			fail(r.line, r.address, "address: a mailbox with this address exists")
		case errors.Is(err, errImportStopped):
			fail(r.line, r.address, err.Error())
		default:
			if !logged {
				logged = true
				s.log.Error("mailbox import failed", zap.String("domain", d.Name), zap.Int("line", r.line),
					zap.String("error", redact(err.Error(), r.password)))
			}
			fail(r.line, r.address, "internal error")
		}
	}
	slices.SortFunc(res.Failed, func(a, b importFailure) int { return a.Line - b.Line })
	return res
}
