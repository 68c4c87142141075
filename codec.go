package scuttlebutt

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/vmihailenco/msgpack/v5"
)

// Every message is one msgpack array; see docs/protocol.md. The size
// functions below give the exact encoded size of each part, so messages are
// built against the byte budget without encoding twice; TestSizesMatchEncoding
// holds them to the encoder.

const messageFields = 10

// Errors of decoding, also the reasons under which dropped packets are
// counted (Stats.Dropped).
var (
	errTruncated  = errors.New("truncated or malformed")
	errBadMagic   = errors.New("bad magic")
	errBadVersion = errors.New("unsupported protocol version")
	errBadType    = errors.New("unknown message type")
	errTooLarge   = errors.New("too large")
	errCluster    = errors.New("other cluster")
)

// dropReason names the Stats.Dropped counter for a decoding error.
func dropReason(err error) string {
	switch {
	case errors.Is(err, errBadMagic):
		return "bad_magic"
	case errors.Is(err, errBadVersion):
		return "bad_version"
	case errors.Is(err, errBadType):
		return "bad_type"
	case errors.Is(err, errTooLarge):
		return "too_large"
	case errors.Is(err, errCluster):
		return "other_cluster"
	case errors.Is(err, errSelf):
		return "from_self"
	case errors.Is(err, errAuth):
		return "auth_failed"
	case errors.Is(err, errPlaintext):
		return "plaintext"
	case errors.Is(err, errEncrypted):
		return "encrypted"
	}
	return "malformed"
}

func uintSize(v uint64) int {
	switch {
	case v < 128:
		return 1
	case v < 1<<8:
		return 2
	case v < 1<<16:
		return 3
	case v < 1<<32:
		return 5
	}
	return 9
}

func strSize(s string) int {
	n := len(s)
	switch {
	case n < 32:
		return 1 + n
	case n < 1<<8:
		return 2 + n
	case n < 1<<16:
		return 3 + n
	}
	return 5 + n
}

func arrayHeaderSize(n int) int {
	switch {
	case n < 16:
		return 1
	case n < 1<<16:
		return 3
	}
	return 5
}

// maxArrayHeader is reserved for an array whose length is not known yet.
const maxArrayHeader = 3

func (e *digestEntry) size() int {
	return 1 + strSize(e.ID) + uintSize(e.Gen) + uintSize(e.MaxVersion) + uintSize(e.LastGC)
}

func (e *wireEntry) size() int {
	return 1 + strSize(e.Key) + strSize(e.Value) + uintSize(e.Version) + 1
}

// headerSize is the size of a delta without its entries' contents.
func (d *nodeDelta) headerSize() int {
	return 1 + strSize(d.ID) + uintSize(d.Gen) + 1 + uintSize(d.FromVersion) +
		uintSize(d.MaxVersion) + uintSize(d.LastGC) + arrayHeaderSize(len(d.Entries))
}

func (d *nodeDelta) size() int {
	n := d.headerSize()
	for i := range d.Entries {
		n += d.Entries[i].size()
	}
	return n
}

// messageHeaderSize is the size of a message with three empty arrays and
// the largest summary.
func messageHeaderSize(t msgType, cluster, from string, gen uint64) int {
	return 1 + uintSize(magic) + uintSize(protocolVersion) + uintSize(uint64(t)) +
		strSize(cluster) + strSize(from) + uintSize(gen) + 9 + 3
}

func (m *message) size() int {
	n := messageHeaderSize(m.Type, m.Cluster, m.From, m.Gen) - 3 - 9 + uintSize(m.Summary)
	n += arrayHeaderSize(len(m.Digest)) + arrayHeaderSize(len(m.Wants)) + arrayHeaderSize(len(m.Deltas))
	for i := range m.Digest {
		n += m.Digest[i].size()
	}
	for i := range m.Wants {
		n += m.Wants[i].size()
	}
	for i := range m.Deltas {
		n += m.Deltas[i].size()
	}
	return n
}

// encode appends the message to buf's contents and returns the bytes.
func (m *message) encode(buf *bytes.Buffer) ([]byte, error) {
	buf.Grow(m.size())
	e := msgpack.NewEncoder(buf)
	w := &writer{e: e}
	w.array(messageFields)
	w.uint(magic)
	w.uint(protocolVersion)
	w.uint(uint64(m.Type))
	w.str(m.Cluster)
	w.str(m.From)
	w.uint(m.Gen)
	w.uint(m.Summary)
	w.digest(m.Digest)
	w.digest(m.Wants)
	w.array(len(m.Deltas))
	for i := range m.Deltas {
		d := &m.Deltas[i]
		w.array(7)
		w.str(d.ID)
		w.uint(d.Gen)
		w.bool(d.Reset)
		w.uint(d.FromVersion)
		w.uint(d.MaxVersion)
		w.uint(d.LastGC)
		w.array(len(d.Entries))
		for j := range d.Entries {
			en := &d.Entries[j]
			w.array(4)
			w.str(en.Key)
			w.str(en.Value)
			w.uint(en.Version)
			w.bool(en.Deleted)
		}
	}
	return buf.Bytes(), w.err
}

// writer keeps the first error of a sequence of writes.
type writer struct {
	e   *msgpack.Encoder
	err error
}

func (w *writer) array(n int) {
	if w.err == nil {
		w.err = w.e.EncodeArrayLen(n)
	}
}

func (w *writer) uint(v uint64) {
	if w.err == nil {
		w.err = w.e.EncodeUint(v)
	}
}

func (w *writer) str(s string) {
	if w.err == nil {
		w.err = w.e.EncodeString(s)
	}
}

func (w *writer) bool(b bool) {
	if w.err == nil {
		w.err = w.e.EncodeBool(b)
	}
}

func (w *writer) digest(es []digestEntry) {
	w.array(len(es))
	for i := range es {
		e := &es[i]
		w.array(4)
		w.str(e.ID)
		w.uint(e.Gen)
		w.uint(e.MaxVersion)
		w.uint(e.LastGC)
	}
}

// decodeMessage decodes one message of at most limit bytes. It never
// panics and never allocates more than the input could hold: every declared
// length is checked against the bytes left, and slices grow with the
// elements actually decoded. cluster, if not empty, must match.
func decodeMessage(b []byte, limit int, cluster string) (*message, error) {
	if len(b) > limit {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", errTooLarge, len(b), limit)
	}
	r := &reader{in: b, r: bytes.NewReader(b)}
	r.d = msgpack.NewDecoder(r.r)
	// The version is read before the number of fields is checked: a
	// message of another version (of another field count) is counted as
	// such, not as malformed.
	fields := r.array(1)
	if r.err != nil || fields < 3 {
		return nil, fmt.Errorf("%w: not a message", errTruncated)
	}
	if v := r.uint(); r.err != nil || v != magic {
		return nil, errBadMagic
	}
	if v := r.uint(); r.err != nil || v != protocolVersion {
		return nil, fmt.Errorf("%w %d", errBadVersion, v)
	}
	if fields != messageFields {
		return nil, fmt.Errorf("%w: %d fields", errTruncated, fields)
	}
	m := &message{}
	t := r.uint()
	if r.err == nil && (t < uint64(msgSyn) || t > uint64(msgPing)) {
		return nil, fmt.Errorf("%w %d", errBadType, t)
	}
	m.Type = msgType(t)
	m.Cluster = r.str(MaxIDSize)
	if r.err == nil && cluster != "" && m.Cluster != cluster {
		return nil, fmt.Errorf("%w %q", errCluster, m.Cluster)
	}
	m.From = r.str(MaxIDSize)
	m.Gen = r.uint()
	m.Summary = r.uint()
	m.Digest = r.digest()
	m.Wants = r.digest()
	n := r.array(minDeltaSize)
	if n > 0 {
		m.Deltas = make([]nodeDelta, 0, min(n, maxPrealloc))
	}
	for i := 0; i < n && r.err == nil; i++ {
		var d nodeDelta
		if r.array(1) != 7 {
			r.fail()
		}
		d.ID = r.str(MaxIDSize)
		d.Gen = r.uint()
		d.Reset = r.bool()
		d.FromVersion = r.uint()
		d.MaxVersion = r.uint()
		d.LastGC = r.uint()
		k := r.array(minEntrySize)
		if k > 0 {
			d.Entries = make([]wireEntry, 0, min(k, maxPrealloc))
		}
		for j := 0; j < k && r.err == nil; j++ {
			if r.array(1) != 4 {
				r.fail()
			}
			e := wireEntry{Key: r.str(MaxKeySize + len(ReservedPrefix)), Value: r.str(limit)}
			e.Version = r.uint()
			e.Deleted = r.bool()
			d.Entries = append(d.Entries, e)
		}
		m.Deltas = append(m.Deltas, d)
	}
	if r.err == nil && r.r.Len() != 0 {
		r.fail()
	}
	if r.err != nil {
		return nil, r.err
	}
	if m.From == "" {
		return nil, fmt.Errorf("%w: empty sender", errTruncated)
	}
	return m, nil
}

// reader decodes with bounds: the first error sticks and later reads
// return zero values.
type reader struct {
	in  []byte
	r   *bytes.Reader
	d   *msgpack.Decoder
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errTruncated
	}
}

// The fewest bytes an element of each array takes (an array header and one
// byte per field), and the most elements allocated ahead of decoding them:
// a declared length is a claim, and a stream may be megabytes long, while a
// decoded element takes ten times its smallest encoding.
const (
	minDigestEntrySize = 5
	minDeltaSize       = 8
	minEntrySize       = 5
	maxPrealloc        = 64
)

// array reads an array header of elements of at least minSize bytes each;
// nil counts as empty. A length whose elements cannot fit in the bytes
// left is an error.
func (r *reader) array(minSize int) int {
	if r.err != nil {
		return 0
	}
	n, err := r.d.DecodeArrayLen()
	if err != nil || n > r.r.Len()/minSize {
		r.fail()
		return 0
	}
	if n < 0 {
		return 0
	}
	return n
}

func (r *reader) uint() uint64 {
	if r.err != nil {
		return 0
	}
	v, err := r.d.DecodeUint64()
	if err != nil {
		r.fail()
	}
	return v
}

func (r *reader) bool() bool {
	if r.err != nil {
		return false
	}
	v, err := r.d.DecodeBool()
	if err != nil {
		r.fail()
	}
	return v
}

func (r *reader) str(limit int) string {
	if r.err != nil {
		return ""
	}
	n, err := r.d.DecodeBytesLen()
	if err != nil || n > limit || n > r.r.Len() {
		r.fail()
		return ""
	}
	if n <= 0 {
		return ""
	}
	pos := len(r.in) - r.r.Len()
	s := string(r.in[pos : pos+n])
	if _, err := r.r.Seek(int64(n), io.SeekCurrent); err != nil {
		r.fail()
	}
	return s
}

func (r *reader) digest() []digestEntry {
	n := r.array(minDigestEntrySize)
	if n == 0 {
		return nil
	}
	es := make([]digestEntry, 0, min(n, maxPrealloc))
	for i := 0; i < n && r.err == nil; i++ {
		if r.array(1) != 4 {
			r.fail()
		}
		e := digestEntry{ID: r.str(MaxIDSize)}
		e.Gen = r.uint()
		e.MaxVersion = r.uint()
		e.LastGC = r.uint()
		es = append(es, e)
	}
	return es
}
