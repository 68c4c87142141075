package scuttlebutt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Every message is one msgpack array; see docs/protocol.md. The size
// functions below give the exact encoded size of each part, so messages are
// built against the byte budget without encoding twice; TestSizesMatchEncoding
// holds them to the encoder.
//
// The codec is written by hand on the bytes, not with a general msgpack
// library: the document says exactly which msgpack forms each field takes
// (unsigned integers, str, arrays, true/false), and anything else (a signed
// integer, bin for a string, nil for an array, a float) is malformed. A
// general decoder converts between such forms, and a Syn whose generation
// is -1 would wrap to 2^64-1 (msgpack/v5 does exactly that). Written on the
// bytes, it is also several times faster and encodes without allocating.
//
// The project's reference msgpack implementation,
// github.com/vmihailenco/msgpack/v5 (a test dependency only), holds the
// hand codec to the spec (codec_msgpack_test.go): random messages of every
// type that we encode decode with msgpack/v5 to exactly the fields and
// msgpack types of docs/protocol.md §3; messages msgpack/v5 encodes from
// that layout (any integer width, and its own struct-as-array encoding)
// decode here to the same message; and every form the document forbids,
// written by msgpack/v5 at every position of the layout, is malformed here.

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
		uintSize(d.MaxVersion) + uintSize(d.LastGC) + uintSize(d.Dead) + arrayHeaderSize(len(d.Entries))
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
	b := buf.AvailableBuffer() // appends below stay in buf's room
	b = appendArray(b, messageFields)
	b = appendUint(b, magic)
	b = appendUint(b, protocolVersion)
	b = appendUint(b, uint64(m.Type))
	b = appendStr(b, m.Cluster)
	b = appendStr(b, m.From)
	b = appendUint(b, m.Gen)
	b = appendUint(b, m.Summary)
	b = appendDigest(b, m.Digest)
	b = appendDigest(b, m.Wants)
	b = appendArray(b, len(m.Deltas))
	for i := range m.Deltas {
		d := &m.Deltas[i]
		b = appendArray(b, deltaFields)
		b = appendStr(b, d.ID)
		b = appendUint(b, d.Gen)
		b = appendBool(b, d.Reset)
		b = appendUint(b, d.FromVersion)
		b = appendUint(b, d.MaxVersion)
		b = appendUint(b, d.LastGC)
		b = appendUint(b, d.Dead)
		b = appendArray(b, len(d.Entries))
		for j := range d.Entries {
			en := &d.Entries[j]
			b = appendArray(b, 4)
			b = appendStr(b, en.Key)
			b = appendStr(b, en.Value)
			b = appendUint(b, en.Version)
			b = appendBool(b, en.Deleted)
		}
	}
	buf.Write(b)
	return buf.Bytes(), nil
}

// deltaFields is the number of elements of a nodeDelta.
const deltaFields = 8

// appendUint appends v as a msgpack unsigned integer in its shortest form.
func appendUint(b []byte, v uint64) []byte {
	switch {
	case v < 128:
		return append(b, byte(v))
	case v < 1<<8:
		return append(b, 0xcc, byte(v))
	case v < 1<<16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(v))
	case v < 1<<32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
}

// appendStr appends s as a msgpack str in its shortest form.
func appendStr(b []byte, s string) []byte {
	n := len(s)
	switch {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n < 1<<8:
		b = append(b, 0xd9, byte(n))
	case n < 1<<16:
		b = binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return append(b, s...)
}

// appendArray appends a msgpack array header in its shortest form.
func appendArray(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n < 1<<16:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 0xc3)
	}
	return append(b, 0xc2)
}

func appendDigest(b []byte, es []digestEntry) []byte {
	b = appendArray(b, len(es))
	for i := range es {
		e := &es[i]
		b = appendArray(b, 4)
		b = appendStr(b, e.ID)
		b = appendUint(b, e.Gen)
		b = appendUint(b, e.MaxVersion)
		b = appendUint(b, e.LastGC)
	}
	return b
}

// decodeMessage decodes one message of at most limit bytes. It never
// panics and never allocates more than the input could hold: every declared
// length is checked against the bytes left, and slices grow with the
// elements actually decoded. cluster, if not empty, must match. Only the
// msgpack forms docs/protocol.md names are accepted: unsigned integers
// (any width), str (any width), arrays and booleans, each where the
// document puts it; anything else is malformed.
func decodeMessage(b []byte, limit int, cluster string) (*message, error) {
	if len(b) > limit {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", errTooLarge, len(b), limit)
	}
	r := &reader{in: b}
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
	if r.err == nil && (t < uint64(msgSyn) || t > uint64(maxMsgType)) {
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
		if r.array(1) != deltaFields {
			r.fail()
		}
		d.ID = r.str(MaxIDSize)
		d.Gen = r.uint()
		d.Reset = r.bool()
		d.FromVersion = r.uint()
		d.MaxVersion = r.uint()
		d.LastGC = r.uint()
		d.Dead = r.uint()
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
	if r.err == nil && r.pos != len(r.in) {
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
	pos int
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errTruncated
	}
}

// left is the number of bytes not read yet.
func (r *reader) left() int { return len(r.in) - r.pos }

// The fewest bytes an element of each array takes (an array header and one
// byte per field), and the most elements allocated ahead of decoding them:
// a declared length is a claim, and a stream may be megabytes long, while a
// decoded element takes ten times its smallest encoding.
const (
	minDigestEntrySize = 5
	minDeltaSize       = 9
	minEntrySize       = 5
	maxPrealloc        = 64
)

// next reads n bytes, or fails.
func (r *reader) next(n int) []byte {
	if r.err != nil || n > r.left() {
		r.fail()
		return nil
	}
	b := r.in[r.pos : r.pos+n]
	r.pos += n
	return b
}

// byte1 reads one byte, or fails.
func (r *reader) byte1() byte {
	b := r.next(1)
	if b == nil {
		return 0
	}
	return b[0]
}

// length reads the big-endian length of size bytes (1, 2 or 4) that
// follows a msgpack header byte.
func (r *reader) length(size int) int {
	b := r.next(size)
	switch {
	case b == nil:
		return 0
	case size == 1:
		return int(b[0])
	case size == 2:
		return int(binary.BigEndian.Uint16(b))
	}
	return int(binary.BigEndian.Uint32(b))
}

// array reads an array header (fixarray, array16 or array32) of elements
// of at least minSize bytes each. A length whose elements cannot fit in
// the bytes left is an error; so is anything but an array header (nil
// included).
func (r *reader) array(minSize int) int {
	h := r.byte1()
	if r.err != nil {
		return 0
	}
	var n int
	switch {
	case h&0xf0 == 0x90:
		n = int(h & 0x0f)
	case h == 0xdc:
		n = r.length(2)
	case h == 0xdd:
		n = r.length(4)
	default:
		r.fail()
		return 0
	}
	if r.err != nil || n > r.left()/minSize {
		r.fail()
		return 0
	}
	return n
}

// uint reads a msgpack unsigned integer: a positive fixint, uint8, uint16,
// uint32 or uint64. Signed forms, negative fixints included, are errors.
func (r *reader) uint() uint64 {
	h := r.byte1()
	if r.err != nil {
		return 0
	}
	switch {
	case h < 0x80:
		return uint64(h)
	case h == 0xcc:
		if b := r.next(1); b != nil {
			return uint64(b[0])
		}
	case h == 0xcd:
		if b := r.next(2); b != nil {
			return uint64(binary.BigEndian.Uint16(b))
		}
	case h == 0xce:
		if b := r.next(4); b != nil {
			return uint64(binary.BigEndian.Uint32(b))
		}
	case h == 0xcf:
		if b := r.next(8); b != nil {
			return binary.BigEndian.Uint64(b)
		}
	default:
		r.fail()
	}
	return 0
}

// bool reads msgpack true or false.
func (r *reader) bool() bool {
	switch h := r.byte1(); {
	case r.err != nil:
	case h == 0xc3:
		return true
	case h != 0xc2:
		r.fail()
	}
	return false
}

// str reads a msgpack str (fixstr, str8, str16 or str32) of at most limit
// bytes. bin, nil and every other form are errors.
func (r *reader) str(limit int) string {
	h := r.byte1()
	if r.err != nil {
		return ""
	}
	var n int
	switch {
	case h&0xe0 == 0xa0:
		n = int(h & 0x1f)
	case h == 0xd9:
		n = r.length(1)
	case h == 0xda:
		n = r.length(2)
	case h == 0xdb:
		n = r.length(4)
	default:
		r.fail()
		return ""
	}
	if r.err != nil || n > limit || n > r.left() {
		r.fail()
		return ""
	}
	return string(r.next(n))
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
