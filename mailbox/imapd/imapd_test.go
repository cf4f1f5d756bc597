package imapd

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/mxcont/mxcont/admin/auth"
	"github.com/mxcont/mxcont/mailbox"
)

func TestLogin(t *testing.T) {
	e := newEnv(t)
	e.user("alice@example.com")
	c := e.dial(nil)
	if caps := c.Caps(); !caps.Has("AUTH=PLAIN") || caps.Has(imap.CapLoginDisabled) || !caps.Has(imap.CapSASLIR) {
		t.Fatalf("loopback caps before login: %v", caps)
	}
	for _, tc := range []struct{ user, pw string }{
		{"alice@example.com", "wrong password"},
		{"nobody@example.com", testPassword},
		{"", testPassword},
	} {
		err := c.Login(tc.user, tc.pw).Wait()
		if imapCode(err) != imap.ResponseCodeAuthenticationFailed {
			t.Errorf("LOGIN %q/%q: %v; want NO [AUTHENTICATIONFAILED]", tc.user, tc.pw, err)
		}
	}
	if err := c.Login("Alice@Example.COM", testPassword).Wait(); err != nil {
		t.Fatalf("LOGIN: %v", err)
	}
	if caps := c.Caps(); !caps.Has(imap.CapSpecialUse) || !caps.Has(imap.CapMove) || !caps.Has(imap.CapESearch) {
		t.Errorf("caps after login: %v", caps)
	}
	// Roundcube's way: AUTHENTICATE PLAIN with an initial response.
	c2 := e.dial(nil)
	if err := c2.Authenticate(sasl.NewPlainClient("", "alice@example.com", testPassword)); err != nil {
		t.Fatalf("AUTHENTICATE PLAIN: %v", err)
	}
	c3 := e.dial(nil)
	if err := c3.Authenticate(sasl.NewPlainClient("", "alice@example.com", "nope nope")); err == nil {
		t.Fatal("AUTHENTICATE PLAIN with a wrong password succeeded")
	}
	if err := c2.Logout().Wait(); err != nil {
		t.Fatalf("LOGOUT: %v", err)
	}
}

func TestLoginThrottled(t *testing.T) {
	e := newEnv(t, func(_ *env, c *Config) {
		c.Throttle = auth.NewThrottle(auth.ThrottleConfig{Free: 2, Base: time.Hour})
	})
	e.user("alice@example.com")
	e.user("bob@example.com")
	c := e.dial(nil)
	for i := 0; i < 2; i++ {
		if err := c.Login("alice@example.com", "guess"+string(rune('a'+i))).Wait(); imapCode(err) != imap.ResponseCodeAuthenticationFailed {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	// Now even the right password is refused for a while.
	if err := c.Login("alice@example.com", testPassword).Wait(); imapCode(err) != imap.ResponseCodeUnavailable {
		t.Fatalf("login after 2 failures: %v; want NO [UNAVAILABLE]", err)
	}
	// Other users of the same (loopback, webmail) client are not affected.
	if err := c.Login("bob@example.com", testPassword).Wait(); err != nil {
		t.Fatalf("bob: %v", err)
	}
}

func listNames(l []*imap.ListData) []string {
	var out []string
	for _, d := range l {
		out = append(out, d.Mailbox)
	}
	return out
}

func hasAttr(d *imap.ListData, a imap.MailboxAttr) bool {
	for _, x := range d.Attrs {
		if strings.EqualFold(string(x), string(a)) {
			return true
		}
	}
	return false
}

func TestListStatusNamespace(t *testing.T) {
	e := newEnv(t)
	e.user("alice@example.com")
	e.deliver(simple("one"), "alice@example.com")
	c := e.login("alice@example.com", nil)

	all, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if got := listNames(all); !slices.Equal(got, []string{"INBOX", "Drafts", "Sent", "Trash"}) {
		t.Fatalf("LIST \"\" \"*\" = %v", got)
	}
	for _, d := range all {
		want := map[string]imap.MailboxAttr{"Sent": imap.MailboxAttrSent, "Drafts": imap.MailboxAttrDrafts, "Trash": imap.MailboxAttrTrash}[d.Mailbox]
		if want != "" && !hasAttr(d, want) {
			t.Errorf("%s lacks %s: %v", d.Mailbox, want, d.Attrs)
		}
		if d.Delim != '/' {
			t.Errorf("%s: delimiter %q", d.Mailbox, d.Delim)
		}
	}
	// Roundcube: LIST (SPECIAL-USE) "" "*" RETURN (SUBSCRIBED)
	su, err := c.List("", "*", &imap.ListOptions{SelectSpecialUse: true, ReturnSubscribed: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if got := listNames(su); !slices.Equal(got, []string{"Drafts", "Sent", "Trash"}) {
		t.Fatalf("LIST (SPECIAL-USE) = %v", got)
	}
	for _, d := range su {
		if !hasAttr(d, imap.MailboxAttrSubscribed) {
			t.Errorf("%s not \\Subscribed: %v", d.Mailbox, d.Attrs)
		}
	}
	// LIST-STATUS
	ls, err := c.List("", "INBOX", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true, NumUnseen: true}}).Collect()
	if err != nil || len(ls) != 1 || ls[0].Status == nil || *ls[0].Status.NumMessages != 1 || *ls[0].Status.NumUnseen != 1 {
		t.Fatalf("LIST RETURN (STATUS) = %+v, %v", ls, err)
	}
	st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true, NumUnseen: true, UIDNext: true, UIDValidity: true}).Wait()
	if err != nil || *st.NumMessages != 1 || *st.NumUnseen != 1 || st.UIDNext != 2 || st.UIDValidity == 0 {
		t.Fatalf("STATUS = %+v, %v", st, err)
	}
	ns, err := c.Namespace().Wait()
	if err != nil || len(ns.Personal) != 1 || ns.Personal[0].Delim != '/' {
		t.Fatalf("NAMESPACE = %+v, %v", ns, err)
	}
}

func TestSelectSearchFetch(t *testing.T) {
	e := newEnv(t)
	e.user("alice@example.com")
	e.deliver(multipart, "alice@example.com")
	e.deliver(simple("lunch"), "alice@example.com")
	c := e.login("alice@example.com", nil)

	sd, err := c.Select("INBOX", nil).Wait()
	if err != nil || sd.NumMessages != 2 || sd.UIDNext != 3 || sd.UIDValidity == 0 {
		t.Fatalf("SELECT = %+v, %v", sd, err)
	}
	search := func(crit *imap.SearchCriteria, opts *imap.SearchOptions) []imap.UID {
		t.Helper()
		d, err := c.UIDSearch(crit, opts).Wait()
		if err != nil {
			t.Fatalf("UID SEARCH: %v", err)
		}
		return d.AllUIDs()
	}
	if got := search(&imap.SearchCriteria{}, nil); !slices.Equal(got, []imap.UID{1, 2}) {
		t.Errorf("UID SEARCH ALL = %v", got)
	}
	if got := search(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, nil); !slices.Equal(got, []imap.UID{1, 2}) {
		t.Errorf("UID SEARCH UNSEEN = %v", got)
	}
	// Roundcube's quick search: UID SEARCH RETURN (ALL) OR HEADER SUBJECT x HEADER FROM x
	or := &imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{
		{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "quarterly"}}},
		{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "quarterly"}}},
	}}}
	if got := search(or, &imap.SearchOptions{ReturnAll: true}); !slices.Equal(got, []imap.UID{1}) {
		t.Errorf("ESEARCH OR HEADER = %v", got)
	}
	if got := search(&imap.SearchCriteria{Body: []string{"numbers are attached"}}, nil); !slices.Equal(got, []imap.UID{1}) {
		t.Errorf("UID SEARCH BODY = %v", got)
	}

	hdr := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"From", "Subject"}, Peek: true}
	part1 := &imap.FetchItemBodySection{Part: []int{1}, Peek: true}
	bin2 := &imap.FetchItemBinarySection{Part: []int{2}, Peek: true}
	msgs, err := c.Fetch(imap.UIDSetNum(1), &imap.FetchOptions{
		UID: true, RFC822Size: true, Flags: true, InternalDate: true, Envelope: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection:   []*imap.FetchItemBodySection{hdr, part1},
		BinarySection: []*imap.FetchItemBinarySection{bin2},
	}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("UID FETCH = %d messages, %v", len(msgs), err)
	}
	m := msgs[0]
	if m.UID != 1 || m.RFC822Size != int64(len(multipart)) || len(m.Flags) != 0 {
		t.Errorf("UID %d size %d flags %v", m.UID, m.RFC822Size, m.Flags)
	}
	if !m.InternalDate.Equal(time.Date(2026, 11, 2, 10, 30, 0, 0, time.UTC)) {
		t.Errorf("INTERNALDATE %v", m.InternalDate)
	}
	if m.Envelope == nil || m.Envelope.Subject != "Quarterly report" || len(m.Envelope.From) != 1 ||
		m.Envelope.From[0].Addr() != "carol@sender.example" || m.Envelope.MessageID != "q1@sender.example" {
		t.Errorf("ENVELOPE %+v", m.Envelope)
	}
	mp, ok := m.BodyStructure.(*imap.BodyStructureMultiPart)
	if !ok || !strings.EqualFold(mp.Subtype, "mixed") || len(mp.Children) != 2 {
		t.Fatalf("BODYSTRUCTURE %#v", m.BodyStructure)
	}
	if p, ok := mp.Children[0].(*imap.BodyStructureSinglePart); !ok || p.MediaType() != "text/plain" || p.Params["charset"] != "utf-8" {
		t.Errorf("part 1: %#v", mp.Children[0])
	}
	if p, ok := mp.Children[1].(*imap.BodyStructureSinglePart); !ok || p.MediaType() != "application/octet-stream" ||
		p.Disposition() == nil || p.Disposition().Value != "attachment" || !strings.EqualFold(p.Encoding, "base64") {
		t.Errorf("part 2: %#v", mp.Children[1])
	}
	h := string(m.FindBodySection(hdr))
	if !strings.Contains(h, "Subject: Quarterly report") || !strings.Contains(h, "From: Carol") || strings.Contains(h, "Message-ID") {
		t.Errorf("HEADER.FIELDS = %q", h)
	}
	if b := string(m.FindBodySection(part1)); strings.TrimSpace(b) != "Hello Alice, the numbers are attached." {
		t.Errorf("BODY[1] = %q", b)
	}
	if b := m.FindBinarySection(bin2); !bytes.Equal(b, []byte{0, 1, 2, 3, 4, 5, 6, 7}) {
		t.Errorf("BINARY[2] = %q", b)
	}

	// BODY[] without PEEK returns the whole message and sets \Seen.
	full := &imap.FetchItemBodySection{}
	msgs, err = c.Fetch(imap.UIDSetNum(1), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{full}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("UID FETCH BODY[] = %v", err)
	}
	if got := string(msgs[0].FindBodySection(full)); got != multipart {
		t.Errorf("BODY[] differs from the message (%d vs %d bytes)", len(got), len(multipart))
	}
	if !slices.Contains(msgs[0].Flags, imap.FlagSeen) {
		t.Errorf("flags after BODY[]: %v", msgs[0].Flags)
	}
	if got := search(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, nil); !slices.Equal(got, []imap.UID{2}) {
		t.Errorf("UNSEEN after reading 1 = %v", got)
	}
	// Sequence-number FETCH with "*".
	msgs, err = c.Fetch(imap.SeqSet{{Start: 2, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].UID != 2 || msgs[0].SeqNum != 2 {
		t.Errorf("FETCH 2:* = %+v, %v", msgs, err)
	}
}

func TestStoreAppendCopyMoveExpunge(t *testing.T) {
	e := newEnv(t)
	e.user("alice@example.com")
	for _, s := range []string{"one", "two", "three", "four"} {
		e.deliver(simple(s), "alice@example.com")
	}
	c := e.login("alice@example.com", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	// STORE +FLAGS answers with the new flags; -FLAGS.SILENT does not.
	msgs, err := c.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Label1", imap.FlagSeen}}, nil).Collect()
	if err != nil || len(msgs) != 1 || len(msgs[0].Flags) != 3 {
		t.Fatalf("STORE +FLAGS = %+v, %v", msgs, err)
	}
	msgs, err = c.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsDel, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil).Collect()
	if err != nil || len(msgs) != 0 {
		t.Fatalf("STORE -FLAGS.SILENT = %+v, %v", msgs, err)
	}

	// APPEND to Sent, as Roundcube saves a reply.
	sent := simple("re: one")
	app := c.Append("Sent", int64(len(sent)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}, Time: time.Date(2026, 11, 3, 8, 0, 0, 0, time.UTC)})
	if _, err := io.WriteString(app, sent); err != nil {
		t.Fatal(err)
	}
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	ad, err := app.Wait()
	if err != nil || ad.UID != 1 || ad.UIDValidity == 0 {
		t.Fatalf("APPEND = %+v, %v", ad, err)
	}
	// APPEND to a missing folder asks the client to create it.
	app = c.Append("Nowhere", 5, nil)
	_, _ = io.WriteString(app, "x\r\n\r\n")
	_ = app.Close()
	if _, err := app.Wait(); imapCode(err) != imap.ResponseCodeTryCreate {
		t.Fatalf("APPEND to missing folder: %v", err)
	}

	cd, err := c.Copy(imap.UIDSetNum(1), "Trash").Wait()
	if err != nil || cd.UIDValidity == 0 || !slices.Equal(mustUIDs(t, cd.DestUIDs), []imap.UID{1}) {
		t.Fatalf("UID COPY = %+v, %v", cd, err)
	}
	md, err := c.Move(imap.UIDSetNum(2), "Trash").Wait()
	if err != nil || !slices.Equal(mustUIDs(t, md.DestUIDs), []imap.UID{2}) {
		t.Fatalf("UID MOVE = %+v, %v", md, err)
	}
	if n := c.Mailbox().NumMessages; n != 3 {
		t.Fatalf("INBOX has %d messages after MOVE, want 3", n)
	}
	// EXPUNGE removes \Deleted messages: seq 1 is UID 1.
	if _, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	gone, err := c.Expunge().Collect()
	if err != nil || !slices.Equal(gone, []uint32{1}) {
		t.Fatalf("EXPUNGE = %v, %v", gone, err)
	}
	// UID EXPUNGE removes only the named \Deleted messages.
	if _, err := c.Store(imap.UIDSetNum(3, 4), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	gone, err = c.UIDExpunge(imap.UIDSetNum(4)).Collect()
	if err != nil || !slices.Equal(gone, []uint32{2}) {
		t.Fatalf("UID EXPUNGE 4 = %v, %v", gone, err)
	}
	_ = c.Logout().Wait()

	// Everything, flags included, survives a restart.
	e.restart(Config{InsecureAuth: loopbackTrusted})
	check := func(folder string, want map[uint32][]string) {
		t.Helper()
		_, msgs, err := e.st.Messages("alice@example.com", folder)
		if err != nil {
			t.Fatal(err)
		}
		got := map[uint32][]string{}
		for _, m := range msgs {
			got[m.UID] = m.Flags
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %v, want %v", folder, got, want)
		}
		for uid, fl := range want {
			if !sameFlags(got[uid], fl) {
				t.Errorf("%s uid %d: flags %v, want %v", folder, uid, got[uid], fl)
			}
		}
	}
	check("INBOX", map[uint32][]string{3: {`\Deleted`}})
	check("Trash", map[uint32][]string{1: {`\Flagged`, "$Label1"}, 2: nil})
	check("Sent", map[uint32][]string{1: {`\Seen`}})
	c = e.login("alice@example.com", nil)
	if _, err := c.Select("Sent", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	full := &imap.FetchItemBodySection{Peek: true}
	msgs, err = c.Fetch(imap.UIDSetNum(1), &imap.FetchOptions{Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{full}}).Collect()
	if err != nil || len(msgs) != 1 || string(msgs[0].FindBodySection(full)) != sent ||
		!msgs[0].InternalDate.Equal(time.Date(2026, 11, 3, 8, 0, 0, 0, time.UTC)) {
		t.Fatalf("Sent after restart: %+v, %v", msgs, err)
	}
}

func mustUIDs(t *testing.T, s imap.NumSet) []imap.UID {
	t.Helper()
	u, ok := s.(imap.UIDSet)
	if !ok {
		t.Fatalf("not a UID set: %v", s)
	}
	l, _ := u.Nums()
	return l
}

// restart closes the server and the store and starts both again.
func (e *env) restart(cfg Config) {
	e.t.Helper()
	_ = e.srv.Close()
	if err := e.st.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.openStore()
	e.start(cfg, false)
}

func TestIsolation(t *testing.T) {
	e := newEnv(t)
	e.user("alice@example.com")
	e.user("bob@example.com")
	e.deliver(simple("for alice"), "alice@example.com")
	e.deliver(simple("secret for bob"), "bob@example.com")
	c := e.login("alice@example.com", nil)
	all, err := c.List("", "*", nil).Collect()
	if err != nil || len(all) != 4 {
		t.Fatalf("alice's LIST = %v, %v", listNames(all), err)
	}
	for _, name := range []string{"bob@example.com/INBOX", "bob@example.com", "../bob@example.com/INBOX", "/bob@example.com/INBOX"} {
		if _, err := c.Select(name, nil).Wait(); err == nil {
			t.Errorf("alice selected %q", name)
		}
		if _, err := c.Status(name, &imap.StatusOptions{NumMessages: true}).Wait(); err == nil {
			t.Errorf("alice got STATUS of %q", name)
		}
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	full := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{full}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("alice's FETCH 1:* = %d, %v", len(msgs), err)
	}
	if b := string(msgs[0].FindBodySection(full)); !strings.Contains(b, "for alice") || strings.Contains(b, "secret") {
		t.Fatalf("alice read %q", b)
	}
	if _, err := c.Copy(imap.UIDSetNum(1), "bob@example.com/INBOX").Wait(); err == nil {
		t.Error("alice copied into a folder named after bob")
	}
	if u, _ := e.st.User("bob@example.com"); u.Messages != 1 {
		t.Errorf("bob has %d messages", u.Messages)
	}
	// Bob sees only his own.
	c2 := e.login("bob@example.com", nil)
	if _, err := c2.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err = c2.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{full}}).Collect()
	if err != nil || len(msgs) != 1 || !strings.Contains(string(msgs[0].FindBodySection(full)), "secret for bob") {
		t.Fatalf("bob's FETCH: %v", err)
	}
	// Deleting bob ends his sessions at their next command.
	if err := e.st.DeleteUser("bob@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Select("INBOX", nil).Wait(); err == nil {
		t.Fatal("deleted user selected INBOX")
	}
	select {
	case <-c2.Closed():
	case <-time.After(30 * time.Second):
		t.Fatal("session of a deleted user not closed")
	}
	if err := e.dial(nil).Login("bob@example.com", testPassword).Wait(); imapCode(err) != imap.ResponseCodeAuthenticationFailed {
		t.Fatalf("deleted user logs in: %v", err)
	}
}

// updates records unilateral responses.
type updates struct {
	mu       sync.Mutex
	expunged []uint32
	exists   []uint32
	flags    map[uint32][]imap.Flag
	notify   chan struct{}
}

func newUpdates() *updates {
	return &updates{flags: map[uint32][]imap.Flag{}, notify: make(chan struct{}, 100)}
}

func (u *updates) handler() *imapclient.UnilateralDataHandler {
	return &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) {
			u.mu.Lock()
			u.expunged = append(u.expunged, seq)
			u.mu.Unlock()
			u.notify <- struct{}{}
		},
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				u.mu.Lock()
				u.exists = append(u.exists, *d.NumMessages)
				u.mu.Unlock()
				u.notify <- struct{}{}
			}
		},
		Fetch: func(m *imapclient.FetchMessageData) {
			buf, err := m.Collect()
			if err == nil {
				u.mu.Lock()
				u.flags[buf.SeqNum] = buf.Flags
				u.mu.Unlock()
			}
		},
	}
}

func TestConcurrentSessions(t *testing.T) {
	e := newEnv(t)
	e.user("alice@example.com")
	e.deliver(simple("one"), "alice@example.com")
	e.deliver(simple("two"), "alice@example.com")
	up := newUpdates()
	c1 := e.login("alice@example.com", up.handler())
	if _, err := c1.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	c2 := e.login("alice@example.com", nil)
	if _, err := c2.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	e.deliver(simple("three"), "alice@example.com")

	// A sequence-number FETCH must not expunge under the client's feet;
	// the new message is announced after it.
	if _, err := c1.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect(); err != nil {
		t.Fatal(err)
	}
	up.mu.Lock()
	if len(up.expunged) != 0 {
		t.Errorf("EXPUNGE sent during FETCH: %v", up.expunged)
	}
	if !slices.Equal(up.exists, []uint32{3}) {
		t.Errorf("EXISTS after FETCH: %v, want [3] (1, expunged-but-pending 2, new 3)", up.exists)
	}
	up.mu.Unlock()
	// NOOP delivers the expunge.
	if err := c1.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	up.mu.Lock()
	if !slices.Equal(up.expunged, []uint32{2}) {
		t.Errorf("expunges seen by session 1: %v, want [2]", up.expunged)
	}
	up.mu.Unlock()
	msgs, err := c1.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil || len(msgs) != 2 || msgs[0].UID != 1 || msgs[1].UID != 3 || msgs[1].SeqNum != 2 {
		t.Fatalf("after NOOP: %+v, %v", msgs, err)
	}
	if !slices.Contains(msgs[0].Flags, imap.FlagSeen) {
		t.Errorf("session 1 does not see session 2's \\Seen: %v", msgs[0].Flags)
	}
}

func TestIdle(t *testing.T) {
	e := newEnv(t)
	e.user("alice@example.com")
	up := newUpdates()
	c := e.login("alice@example.com", up.handler())
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	e.deliver(simple("while idling"), "alice@example.com")
	select {
	case <-up.notify:
	case <-time.After(30 * time.Second):
		t.Fatal("no update during IDLE")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if !slices.Equal(up.exists, []uint32{1}) {
		t.Fatalf("EXISTS during IDLE: %v", up.exists)
	}
}

func TestFolders(t *testing.T) {
	e := newEnv(t)
	e.user("alice@example.com")
	c := e.login("alice@example.com", nil)
	if err := c.Create("Projects/2026", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	top, err := c.List("", "%", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if got := listNames(top); !slices.Equal(got, []string{"INBOX", "Drafts", "Projects", "Sent", "Trash"}) {
		t.Fatalf("LIST %% = %v", got)
	}
	for _, d := range top {
		if d.Mailbox == "Projects" && (!hasAttr(d, imap.MailboxAttrNoSelect) || !hasAttr(d, imap.MailboxAttrHasChildren)) {
			t.Errorf("implied parent: %v", d.Attrs)
		}
	}
	if err := c.Create("Sent", nil).Wait(); imapCode(err) != imap.ResponseCodeAlreadyExists {
		t.Errorf("CREATE Sent: %v", err)
	}
	if err := c.Rename("Projects/2026", "Archive", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"INBOX", "Sent", "Drafts", "Trash"} {
		if err := c.Delete(name).Wait(); err == nil {
			t.Errorf("DELETE %s succeeded", name)
		}
		if err := c.Rename(name, "Other", nil).Wait(); err == nil {
			t.Errorf("RENAME %s succeeded", name)
		}
	}
	if err := c.Unsubscribe("Archive").Wait(); err != nil {
		t.Fatal(err)
	}
	subs, err := c.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil || slices.Contains(listNames(subs), "Archive") || len(subs) != 4 {
		t.Fatalf("LIST (SUBSCRIBED) = %v, %v", listNames(subs), err)
	}
	if err := c.Delete("Archive").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("Archive").Wait(); imapCode(err) != imap.ResponseCodeNonExistent {
		t.Errorf("DELETE twice: %v", err)
	}
	all, _ := c.List("", "*", nil).Collect()
	if len(all) != 4 {
		t.Errorf("folders left: %v", listNames(all))
	}
}

func TestStartTLS(t *testing.T) {
	e := newEnv(t, withTLS, func(_ *env, c *Config) {
		c.InsecureAuth = func(net.Addr) bool { return false } // as for a remote client
	})
	e.user("alice@example.com")
	c := e.dial(nil)
	caps := c.Caps()
	if !caps.Has(imap.CapStartTLS) || !caps.Has(imap.CapLoginDisabled) {
		t.Fatalf("caps before STARTTLS: %v", caps)
	}
	if err := c.Login("alice@example.com", testPassword).Wait(); imapCode(err) != imap.ResponseCodePrivacyRequired {
		t.Fatalf("plaintext LOGIN: %v; want NO [PRIVACYREQUIRED]", err)
	}
	if err := c.Authenticate(sasl.NewPlainClient("", "alice@example.com", testPassword)); err == nil {
		t.Fatal("plaintext AUTHENTICATE PLAIN succeeded")
	}
	tc, err := imapclient.DialStartTLS(e.addr, &imapclient.Options{TLSConfig: e.clientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if err := tc.Login("alice@example.com", testPassword).Wait(); err != nil {
		t.Fatalf("LOGIN after STARTTLS: %v", err)
	}
	if _, err := tc.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestImplicitTLS(t *testing.T) {
	var tc *tls.Config
	e := newEnv(t, withTLS, func(_ *env, c *Config) {
		tc = c.TLS
	})
	e.user("alice@example.com")
	strict := Config{TLS: tc, InsecureAuth: func(net.Addr) bool { return false },
		Throttle: auth.NewThrottle(auth.ThrottleConfig{Free: 2, Base: time.Hour})}
	e.start(strict, true)
	dial := func() *imapclient.Client {
		c, err := imapclient.DialTLS(e.addr, &imapclient.Options{TLSConfig: e.clientTLS()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	c := dial()
	if caps := c.Caps(); caps.Has(imap.CapLoginDisabled) || caps.Has(imap.CapStartTLS) {
		t.Fatalf("caps on implicit TLS: %v", caps)
	}
	if err := c.Login("alice@example.com", testPassword).Wait(); err != nil {
		t.Fatalf("LOGIN on implicit TLS: %v", err)
	}
	// From a client that is not trusted, failures count per IP as well:
	// two failures for other names block alice from that address.
	c2 := dial()
	for _, u := range []string{"x@example.com", "y@example.com"} {
		if err := c2.Login(u, "guess guess").Wait(); imapCode(err) != imap.ResponseCodeAuthenticationFailed {
			t.Fatalf("guess %s: %v", u, err)
		}
	}
	if err := c2.Login("alice@example.com", testPassword).Wait(); imapCode(err) != imap.ResponseCodeUnavailable {
		t.Fatalf("login from a throttled IP: %v; want NO [UNAVAILABLE]", err)
	}
}

func TestMaxConnections(t *testing.T) {
	e := newEnv(t, func(_ *env, c *Config) { c.MaxConnections = 1 })
	e.user("alice@example.com")
	c1 := e.login("alice@example.com", nil)
	c2, err := imapclient.DialInsecure(e.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.WaitGreeting(); err == nil {
		t.Fatal("second connection greeted despite MaxConnections 1")
	}
	_ = c1.Logout().Wait()
	_ = c1.Close()
	for i := 0; e.srv.Sessions() != 0; i++ {
		if i > 3000 {
			t.Fatal("session not released")
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.login("alice@example.com", nil)
}

func TestExamineReadOnly(t *testing.T) {
	e := newEnv(t)
	e.user("alice@example.com")
	e.deliver(simple("one"), "alice@example.com")
	c := e.login("alice@example.com", nil)
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	full := &imap.FetchItemBodySection{}
	if _, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{full}}).Collect(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err == nil {
		t.Error("STORE in EXAMINE succeeded")
	}
	_, msgs, _ := e.st.Messages("alice@example.com", "INBOX")
	if len(msgs) != 1 || len(msgs[0].Flags) != 0 {
		t.Errorf("EXAMINE changed flags: %+v", msgs)
	}
}

var _ = mailbox.FlagSeen
