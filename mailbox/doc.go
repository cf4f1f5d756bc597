// Package mailbox keeps the shadow mailboxes of domains in mode "both":
// mailbox users (address + argon2id password hash), their folders (INBOX,
// Sent, Drafts, Trash) and messages, stored crash-safely in the data
// directory. The acceptor files a copy of every message for a mailbox user
// (Deliver) before it answers 250; the IMAP server (package imapd) and the
// submission server read and write through the Store. Shadow copies are
// purged a configurable time after the domain's outage ends.
//
// # On-disk layout
//
//	Dir/mailbox.db            bbolt: users, folders, message index, blob refcounts
//	Dir/blobs/xx/<id>         one file per message body (xx = first two hex digits of id)
//
// Message bodies never live in bbolt (whose file never shrinks); they are
// files named by a random 24-hex-digit id. A body is written to its final
// name, fsynced, and its directory fsynced; only then does the index
// transaction that references it commit. The index commit is therefore the
// commit point: a file that no index entry references is garbage left by a
// crash and is removed by Open. Deleting works the other way round: the
// index transaction commits first, the file is unlinked after it (a crash
// in between again only leaves garbage for Open). One body may be
// referenced by several index entries (a message delivered to several
// users, COPY); the blobs bucket counts the references.
//
// # Buckets of mailbox.db
//
//	users   address → JSON {"hash": argon2id PHC string, "created": RFC 3339}
//	boxes   address → bucket:
//	          "stat"     → messages (8 bytes BE) ‖ bytes (8 bytes BE)
//	          "uv"       → last UIDVALIDITY handed out (4 bytes BE)
//	          "fid"      → last folder id handed out (8 bytes BE)
//	          folders    → bucket: folder name → JSON folderRec
//	          msgs       → bucket: folder id (8 bytes BE) → bucket:
//	                         uid (4 bytes BE) → msgRec (see record.go)
//	blobs   blob id → reference count (4 bytes BE)
//
// Folder names are stored as IMAP shows them ("INBOX", "Sent",
// "Projects/2026"), with "/" as the hierarchy delimiter; a folder's
// messages live under its immutable id, so RENAME touches only the
// folders bucket.
//
// Open checks the store: it recounts blob references from the index,
// drops index entries whose body file is missing (logging an error),
// removes unreferenced files and leftover temporary files, and recomputes
// each user's message and byte counts.
package mailbox
