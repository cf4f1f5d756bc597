package spool

// Recipient delivery status, stored in MESSAGE and UPDATE records.
const (
	rcptPending   uint8 = 0
	rcptDelivered uint8 = 1
	rcptFailed    uint8 = 2
)

// Update operations, stored in UPDATE records.
const (
	opAttempt uint8 = 1
	opDelete  uint8 = 2
	opExpire  uint8 = 3
	opRetry   uint8 = 4
)

// msgMeta is the meta section of a MESSAGE record.
type msgMeta struct {
	id         ID
	size       int64
	chunkBytes int64
	domain     string
	from       string
	rcpts      []string
	attempts   int
	next       int64 // Unix ms, 0 = unset
	lastErr    string
	status     []uint8
	chunks     []uint64
}

func (m *msgMeta) encode(e enc) enc {
	e = e.u64(uint64(m.id)).uv(uint64(m.size)).uv(uint64(m.chunkBytes))
	e = e.str(m.domain).str(m.from).strs(m.rcpts)
	e = e.uv(uint64(m.attempts)).ms(m.next).str(m.lastErr)
	for i := range m.rcpts {
		var s uint8
		if i < len(m.status) {
			s = m.status[i]
		}
		e = e.u8(s)
	}
	e = e.uv(uint64(len(m.chunks)))
	for _, c := range m.chunks {
		e = e.uv(c)
	}
	return e
}

func decodeMsgMeta(b []byte) (msgMeta, error) {
	d := dec{b: b}
	var m msgMeta
	m.id = ID(d.u64())
	m.size = int64(d.uv())
	m.chunkBytes = int64(d.uv())
	m.domain = d.str()
	m.from = d.str()
	n := d.count(1)
	if n > 0 {
		m.rcpts = make([]string, n)
		for i := range m.rcpts {
			m.rcpts[i] = d.str()
		}
	}
	m.attempts = int(d.uv())
	m.next = d.sv()
	m.lastErr = d.str()
	m.status = append([]uint8(nil), d.raw(n)...)
	k := d.count(1)
	if k > 0 {
		m.chunks = make([]uint64, k)
		for i := range m.chunks {
			m.chunks[i] = d.uv()
		}
	}
	if err := d.done(); err != nil {
		return msgMeta{}, err
	}
	if m.size < 0 || m.chunkBytes < 0 {
		return msgMeta{}, errCorruptf("negative size")
	}
	return m, nil
}

type rcptUpdate struct {
	idx    int
	status uint8
}

// updMeta is the meta section of an UPDATE record.
type updMeta struct {
	id       ID
	op       uint8
	attempts int
	next     int64
	lastErr  string
	rcpts    []rcptUpdate
	actor    string
}

func (u *updMeta) encode(e enc) enc {
	e = e.u64(uint64(u.id)).u8(u.op).uv(uint64(u.attempts)).ms(u.next).str(u.lastErr)
	e = e.uv(uint64(len(u.rcpts)))
	for _, r := range u.rcpts {
		e = e.uv(uint64(r.idx)).u8(r.status)
	}
	return e.str(u.actor)
}

func decodeUpdMeta(b []byte) (updMeta, error) {
	d := dec{b: b}
	var u updMeta
	u.id = ID(d.u64())
	u.op = d.u8()
	u.attempts = int(d.uv())
	u.next = d.sv()
	u.lastErr = d.str()
	n := d.count(2)
	if n > 0 {
		u.rcpts = make([]rcptUpdate, n)
		for i := range u.rcpts {
			u.rcpts[i] = rcptUpdate{idx: int(d.uv()), status: d.u8()}
		}
	}
	u.actor = d.str()
	if err := d.done(); err != nil {
		return updMeta{}, err
	}
	if u.op < opAttempt || u.op > opRetry {
		return updMeta{}, errCorruptf("update op %d", u.op)
	}
	return u, nil
}

func decodeChunkMeta(b []byte) (int, error) {
	d := dec{b: b}
	n := d.uv()
	if err := d.done(); err != nil {
		return 0, err
	}
	if n > maxChunkRaw {
		return 0, errCorruptf("chunk of %d bytes", n)
	}
	return int(n), nil
}
