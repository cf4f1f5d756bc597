package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"go.uber.org/zap"

	"github.com/mxcont/mxcont/mailbox"
)

// session is one IMAP connection. go-imap calls its methods one at a
// time (IDLE's updates run while the connection only waits for DONE).
type session struct {
	srv    *Server
	conn   *imapserver.Conn
	remote net.Addr

	user string    // set by Login
	sel  *selected // the selected folder, or nil
}

var (
	_ imapserver.SessionIMAP4rev2   = (*session)(nil)
	_ imapserver.SessionAppendLimit = (*session)(nil)
)

func (s *session) st() *mailbox.Store { return s.srv.st }

func (s *session) Close() error {
	s.sel = nil
	s.srv.sessionDone()
	return nil
}

// AppendLimit implements imapserver.SessionAppendLimit.
func (s *session) AppendLimit() uint32 { return uint32(s.srv.cfg.AppendLimit) }

// secure reports whether the connection is encrypted now.
func (s *session) secure() bool {
	_, ok := s.conn.NetConn().(*tls.Conn)
	return ok
}

func remoteIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

var (
	errPrivacy = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodePrivacyRequired,
		Text: "TLS is required to authenticate"}
	errThrottled = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
		Text: "Too many failed logins, try again later"}
	errServer = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug,
		Text: "Internal server error"}
)

// Login implements LOGIN and AUTHENTICATE PLAIN.
func (s *session) Login(username, password string) error {
	cfg := &s.srv.cfg
	trusted := cfg.InsecureAuth(s.remote)
	if !s.secure() && !trusted {
		return errPrivacy // go-imap already refuses; kept as a second lock
	}
	userKey := "imap-user:" + strings.ToLower(strings.TrimSpace(username))
	ipKey := "imap-ip:" + remoteIP(s.remote)
	if cfg.Throttle.Wait(userKey) > 0 || (!trusted && cfg.Throttle.Wait(ipKey) > 0) {
		s.srv.log.Warn("imap login throttled", zap.String("user", username), zap.Stringer("remote", s.remote))
		return errThrottled
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u, err := s.st().Authenticate(ctx, username, password)
	if err != nil {
		if errors.Is(err, mailbox.ErrAuth) {
			cfg.Throttle.Fail(userKey)
			if !trusted {
				cfg.Throttle.Fail(ipKey)
			}
			s.srv.log.Warn("imap login failed", zap.String("user", username), zap.Stringer("remote", s.remote))
			return imapserver.ErrAuthFailed
		}
		s.srv.log.Error("imap login", zap.String("user", username), zap.Error(err))
		return errServer
	}
	cfg.Throttle.Succeed(userKey)
	s.user = u.Address
	s.srv.log.Info("imap login", zap.String("address", u.Address), zap.Stringer("remote", s.remote),
		zap.Bool("tls", s.secure()))
	return nil
}

// storeErr maps store errors to IMAP responses; unknown ones are logged
// and become a generic NO.
func (s *session) storeErr(op string, err error) error {
	var text string
	var code imap.ResponseCode
	switch {
	case err == nil:
		return nil
	case errors.Is(err, mailbox.ErrNoFolder):
		code, text = imap.ResponseCodeNonExistent, "No such mailbox"
	case errors.Is(err, mailbox.ErrFolderExists):
		code, text = imap.ResponseCodeAlreadyExists, "Mailbox already exists"
	case errors.Is(err, mailbox.ErrFolderProtected):
		code, text = imap.ResponseCodeCannot, "Standard mailboxes cannot be deleted or renamed"
	case errors.Is(err, mailbox.ErrInvalid):
		code, text = imap.ResponseCodeCannot, "Invalid mailbox name or request"
	case errors.Is(err, mailbox.ErrNotFound):
		// The user was deleted while logged in: end the session.
		s.srv.log.Info("imap session of a deleted user closed", zap.String("address", s.user))
		_ = s.conn.Bye("Account removed")
		code, text = imap.ResponseCodeNonExistent, "Account removed"
	case errors.Is(err, mailbox.ErrClosed):
		code, text = imap.ResponseCodeUnavailable, "Server shutting down"
	default:
		s.srv.log.Error("imap "+op, zap.String("address", s.user), zap.Error(err))
		return errServer
	}
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
}

func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Delim: mailbox.Delimiter}}}, nil
}

func (s *session) Create(name string, _ *imap.CreateOptions) error {
	name = strings.TrimRight(name, string(mailbox.Delimiter))
	return s.storeErr("create", s.st().CreateFolder(s.user, name))
}

func (s *session) Delete(name string) error {
	return s.storeErr("delete", s.st().DeleteFolder(s.user, name))
}

func (s *session) Rename(from, to string, _ *imap.RenameOptions) error {
	to = strings.TrimRight(to, string(mailbox.Delimiter))
	return s.storeErr("rename", s.st().RenameFolder(s.user, from, to))
}

func (s *session) Subscribe(name string) error {
	return s.storeErr("subscribe", s.st().Subscribe(s.user, name, true))
}

func (s *session) Unsubscribe(name string) error {
	return s.storeErr("unsubscribe", s.st().Subscribe(s.user, name, false))
}

// statusData answers STATUS (and LIST RETURN (STATUS)) for a folder,
// filling every item go-imap may write.
func (s *session) statusData(name string) (*imap.StatusData, error) {
	f, msgs, err := s.st().Messages(s.user, name)
	if err != nil {
		return nil, s.storeErr("status", err)
	}
	return statusOf(f, msgs), nil
}

func statusOf(f mailbox.Folder, msgs []mailbox.Message) *imap.StatusData {
	var deleted uint32
	var deletedBytes int64
	for _, m := range msgs {
		if hasFlag(m.Flags, mailbox.FlagDeleted) {
			deleted++
			deletedBytes += m.Size
		}
	}
	n, unseen, size, recent := uint32(f.Messages), uint32(f.Unseen), f.Bytes, uint32(0)
	return &imap.StatusData{
		Mailbox:        f.Name,
		NumMessages:    &n,
		UIDNext:        imap.UID(f.UIDNext),
		UIDValidity:    f.UIDValidity,
		NumUnseen:      &unseen,
		NumDeleted:     &deleted,
		Size:           &size,
		DeletedStorage: &deletedBytes,
		NumRecent:      &recent,
	}
}

func (s *session) Status(name string, _ *imap.StatusOptions) (*imap.StatusData, error) {
	return s.statusData(name)
}

// List implements LIST and LSUB, with the LIST-EXTENDED selection options
// SUBSCRIBED and SPECIAL-USE and the return options SUBSCRIBED, CHILDREN,
// SPECIAL-USE and STATUS. Special-use and child attributes are always
// returned.
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: mailbox.Delimiter})
	}
	folders, err := s.st().Folders(s.user)
	if err != nil {
		return s.storeErr("list", err)
	}
	type entry struct {
		f        mailbox.Folder
		exists   bool
		children bool
	}
	all := make(map[string]*entry, len(folders))
	for _, f := range folders {
		all[f.Name] = &entry{f: f, exists: true}
	}
	// Parents implied by deeper names ("a" for "a/b") and child flags.
	for _, f := range folders {
		name := f.Name
		for {
			i := strings.LastIndexByte(name, mailbox.Delimiter)
			if i < 0 {
				break
			}
			name = name[:i]
			e := all[name]
			if e == nil {
				e = &entry{f: mailbox.Folder{Name: name}}
				all[name] = e
			}
			e.children = true
		}
	}
	for i, p := range patterns {
		if strings.EqualFold(p, "INBOX") {
			patterns[i] = "INBOX"
		}
	}
	var names []string
	for name, e := range all {
		match := false
		for _, p := range patterns {
			if imapserver.MatchList(name, mailbox.Delimiter, ref, p) {
				match = true
				break
			}
		}
		if !match {
			continue
		}
		if options.SelectSubscribed && !(e.exists && e.f.Subscribed) {
			continue
		}
		if options.SelectSpecialUse && e.f.SpecialUse == "" {
			continue
		}
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == "INBOX") != (names[j] == "INBOX") {
			return names[i] == "INBOX"
		}
		return names[i] < names[j]
	})
	for _, name := range names {
		e := all[name]
		data := imap.ListData{Mailbox: name, Delim: mailbox.Delimiter}
		if !e.exists {
			data.Attrs = append(data.Attrs, imap.MailboxAttrNoSelect)
			if options.SelectSubscribed || options.ReturnSubscribed {
				data.Attrs = append(data.Attrs, imap.MailboxAttrNonExistent)
			}
		}
		if e.children {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if e.exists && e.f.Subscribed {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if e.f.SpecialUse != "" {
			data.Attrs = append(data.Attrs, imap.MailboxAttr(e.f.SpecialUse))
		}
		if options.ReturnStatus != nil && e.exists {
			st, err := s.statusData(name)
			if err != nil {
				return err
			}
			data.Status = st
		}
		if err := w.WriteList(&data); err != nil {
			return err
		}
	}
	return nil
}

// Append implements APPEND: the message is durable when the OK goes out.
func (s *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	var flags []string
	for _, f := range options.Flags {
		flags = append(flags, string(f))
	}
	uv, uid, err := s.st().AppendUID(s.user, name, flags, options.Time, r)
	if errors.Is(err, mailbox.ErrNoFolder) {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
	}
	if err != nil {
		return nil, s.storeErr("append", err)
	}
	return &imap.AppendData{UID: imap.UID(uid), UIDValidity: uv}, nil
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

func imapFlags(flags []string) []imap.Flag {
	out := make([]imap.Flag, len(flags))
	for i, f := range flags {
		out[i] = imap.Flag(f)
	}
	return out
}
