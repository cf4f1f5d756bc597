#!/usr/bin/env python3
"""Independent IMAP client check for mxcont's imapd, driven by imapd_test.go.

Usage: imaplib_check.py HOST PORT USER PASSWORD
Logs in with Python's imaplib, lists folders, selects INBOX, fetches the
first message's BODYSTRUCTURE and body, searches, appends a message to Sent
and prints one JSON object with what it saw. Any IMAP error raises and
exits non-zero.
"""
import hashlib
import imaplib
import json
import sys
import time


def text(x):
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)


def main():
    host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    out = {}
    m = imaplib.IMAP4(host, port)
    out["capabilities"] = sorted(text(c) for c in m.capabilities)
    typ, _ = m.login(user, password)
    out["login"] = typ

    typ, data = m.list()
    out["list"] = [text(line) for line in data]

    typ, data = m.select("INBOX")
    out["select"] = [typ, text(data[0])]

    typ, data = m.fetch("1", "(UID RFC822.SIZE BODYSTRUCTURE)")
    out["bodystructure"] = text(data[0])

    typ, data = m.fetch("1", "(BODY.PEEK[])")
    body = data[0][1]
    out["body_sha256"] = hashlib.sha256(body).hexdigest()
    out["body_len"] = len(body)

    typ, data = m.uid("SEARCH", None, "ALL")
    out["uid_search"] = text(data[0])
    typ, data = m.search(None, "UNSEEN")
    out["unseen"] = text(data[0])

    msg = (b"From: alice@example.com\r\nTo: carol@sender.example\r\n"
           b"Subject: Re: Quarterly report\r\n\r\nThanks!\r\n")
    typ, data = m.append("Sent", "(\\Seen)", imaplib.Time2Internaldate(time.time()), msg)
    out["append"] = [typ, text(data[0])]

    typ, data = m.status("Sent", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY)")
    out["status_sent"] = text(data[0])

    m.close()
    typ, _ = m.logout()
    out["logout"] = typ
    print(json.dumps(out))


if __name__ == "__main__":
    main()
