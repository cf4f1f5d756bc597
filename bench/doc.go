// Package bench measures a mail transfer agent from the outside, over SMTP
// and HTTP only, exactly as a sending filter and a customer's primary
// server see it. It knows nothing of mxcont's internals, so the same
// scenarios run against mxcont and against Postfix.
//
// The pieces:
//
//   - Generator builds the messages: a fixed body size or a realistic mix
//     (plain text, HTML, base64 attachments up to a few MiB). Every message
//     has a unique Message-ID and an X-Mxbench-Digest header, the SHA-256 of
//     its body (line endings canonicalised to LF), so the receiving side
//     can prove the body arrived intact.
//   - RunLoad is the load generator: concurrent sessions, messages per
//     connection, PIPELINING, recipients and recipient domains per message,
//     a target rate, a count or a duration. Every acknowledged message is
//     written to a Record (JSONL: Message-ID, queue id from the 250 reply,
//     digest, recipients).
//   - Sink is the fake customer primary: it accepts and counts, checks each
//     digest, can add latency or inject 4xx/5xx replies, and logs what it
//     received; Check compares that with a Record (missing = lost,
//     duplicates, foreign mail).
//   - RunOutage is the whole continuity scenario against a running node:
//     primary down, load, primary up, time to the first delivery, drain
//     rate, and the exactly-once check.
//   - ProcSampler reads the MTA's CPU time and memory (RSS, PSS) from /proc
//     for a process and all its descendants, the way Postfix's many
//     processes must be counted.
//   - Reports: a human table, JSON, an SVG chart, and the side-by-side
//     comparison used by scripts/compare-postfix.sh.
package bench
