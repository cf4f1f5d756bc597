// Package spool is mxcont's sharded, compressed, crash-safe message store.
//
// Mail is appended to one of N shards, chosen by xxhash(recipient domain) % N.
// N is fixed when the spool directory is created and recorded in its
// MANIFEST. Each shard is a github.com/tidwall/wal log owned by a single
// committer goroutine that batches every pending append into one write and
// one fsync (group commit). Append returns only after that fsync.
//
// # Directory layout
//
//	<dir>/MANIFEST          JSON: {"version":1,"shards":N,"created":"..."}
//	<dir>/LOCK              flock(2)-held while a process has the spool open
//	<dir>/shard-NNN/        one tidwall/wal log per shard; segments are named
//	                        by their first entry index (%020d)
//	<dir>/shard-NNN/*.broken  damaged bytes moved aside by repair
//
// # Record framing
//
// tidwall/wal stores each entry as uvarint(len) + data, with no checksum.
// Every entry mxcont writes is one record with its own 20-byte header,
// all integers little endian:
//
//	offset size field
//	0      2    magic 0x4D 0x58 ("MX")
//	2      1    version, currently 1
//	3      1    type: 1 MESSAGE, 2 CHUNK, 3 UPDATE, 4 FILLER
//	4      1    codec of the body section: 0 raw, 1 zstd, 2 s2
//	5      3    reserved, zero
//	8      4    meta length M (bytes, uncompressed)
//	12     4    body length B (bytes as stored, after the codec)
//	16     4    CRC32C (Castagnoli) of bytes 0..15, then meta, then body
//	20     M    meta: type-specific, never compressed
//	20+M   B    body: compressed with the codec
//
// The total entry length must be exactly 20+M+B. The checksum is computed
// over the stored (compressed) bytes, so a record can be verified without
// decompressing it and the codec can change between records.
//
// Meta encodings use uvarint lengths ("str" = uvarint length + bytes,
// "u64" = 8 bytes little endian, "ms" = zig-zag varint of Unix milliseconds,
// 0 meaning unset):
//
//	MESSAGE  u64 id, uvarint body size (uncompressed), uvarint stored chunk
//	         bytes, str domain, str from, uvarint n, n × str rcpt,
//	         uvarint attempts, ms next attempt, str last error,
//	         n × u8 recipient status (0 pending, 1 delivered, 2 failed),
//	         uvarint k, k × uvarint WAL index of a CHUNK record.
//	         k = 0: the whole body is this record's body section.
//	         k > 0: the body is the concatenation of the k chunks and this
//	         record's body section is empty. A MESSAGE is the commit point of
//	         its message: chunks that no MESSAGE references are ignored.
//	CHUNK    uvarint raw length; body = one compressed piece (≤ ChunkSize).
//	UPDATE   u64 id, u8 op (1 attempt, 2 delete, 3 expire, 4 retry),
//	         uvarint attempts, ms next attempt, str last error,
//	         uvarint n, n × (uvarint recipient index, u8 status), str actor.
//	FILLER   empty; written by repair in place of entries that were lost,
//	         so that WAL indexes stay contiguous.
//
// A MESSAGE for an id that is already known replaces the earlier one: this
// is how compaction copies long-lived mail forward (the copy carries the
// current delivery state). Replay therefore applies records in log order.
//
// # Compression
//
// Each body section (an inline body, or one CHUNK) is compressed on its
// own and its record names the codec, so codecs can be mixed freely in
// one log. With the default configuration (zstd) the codec policy uses s2
// for messages of at most Config.SmallBody bytes (128 KiB): there zstd
// costs far more CPU than the disk writes it saves. Larger messages use
// zstd (SpeedFastest, all-literal entropy coding). A section that its
// codec does not make smaller is stored raw.
//
// # Recovery
//
// On open every segment of every shard is scanned with our own decoder
// before tidwall/wal sees it. Entries that fail framing or checksum are
// copied to <segment>.broken; a damaged segment is rewritten (temp file,
// fsync, rename, directory fsync) with FILLER records in place of the lost
// entries, so that tidwall/wal opens it and indexes stay contiguous. A torn
// or zero-filled tail is cut off. Leftover *.TEMP and *.tmp files are
// removed. What was lost is reported by Spool.Damage.
package spool
