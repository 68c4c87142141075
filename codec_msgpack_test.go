package scuttlebutt

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// The hand codec (codec.go) held to the reference msgpack implementation,
// github.com/vmihailenco/msgpack/v5, on the layout of docs/protocol.md §3:
//
//   - what our codec encodes, msgpack/v5 decodes to exactly the documented
//     fields, in order, each of the documented msgpack type;
//   - what msgpack/v5 encodes from the documented layout (any integer
//     width, and also msgpack/v5's own struct-as-array encoding), our codec
//     decodes to the same message;
//   - the forms the document forbids (a signed integer, a float or nil for
//     a uint; bin or nil for a str; nil or a map for an array; nil or an
//     integer for a bool), written with msgpack/v5 at every position of the
//     layout, our codec refuses as malformed.
//
// Every run is seeded: a failure names the message and the position.

// mpKind is a msgpack type of docs/protocol.md §3.
type mpKind int

const (
	mpUint  mpKind = iota
	mpStr          // str, never bin
	mpBool         // true or false
	mpTuple        // an array of a fixed number of fields
	mpList         // an array of elements of one shape
)

// mpShape is the documented layout of one value.
type mpShape struct {
	name   string
	kind   mpKind
	fields []mpShape // mpTuple
	elem   *mpShape  // mpList
}

func tuple(name string, fields ...mpShape) mpShape {
	return mpShape{name: name, kind: mpTuple, fields: fields}
}
func list(name string, elem mpShape) mpShape { return mpShape{name: name, kind: mpList, elem: &elem} }
func leaf(name string, k mpKind) mpShape     { return mpShape{name: name, kind: k} }

// docLayout is docs/protocol.md §3, field by field.
var docLayout = func() mpShape {
	digestEntry := tuple("digestEntry",
		leaf("id", mpStr), leaf("gen", mpUint), leaf("maxVersion", mpUint), leaf("lastGC", mpUint))
	entry := tuple("entry",
		leaf("key", mpStr), leaf("value", mpStr), leaf("version", mpUint), leaf("deleted", mpBool))
	nodeDelta := tuple("nodeDelta",
		leaf("id", mpStr), leaf("gen", mpUint), leaf("reset", mpBool), leaf("fromVersion", mpUint),
		leaf("maxVersion", mpUint), leaf("lastGC", mpUint), leaf("dead", mpUint), list("entries", entry))
	return tuple("message",
		leaf("magic", mpUint), leaf("version", mpUint), leaf("type", mpUint), leaf("cluster", mpStr),
		leaf("from", mpStr), leaf("gen", mpUint), leaf("summary", mpUint),
		list("digest", digestEntry), list("wants", digestEntry), list("deltas", nodeDelta))
}()

// docValue is a message as the documented layout's generic values: uint64,
// string, bool and []any, in the order of docLayout.
func docValue(m *message) []any {
	digest := func(es []digestEntry) []any {
		out := []any{}
		for _, e := range es {
			out = append(out, []any{e.ID, e.Gen, e.MaxVersion, e.LastGC})
		}
		return out
	}
	deltas := []any{}
	for _, d := range m.Deltas {
		entries := []any{}
		for _, e := range d.Entries {
			entries = append(entries, []any{e.Key, e.Value, e.Version, e.Deleted})
		}
		deltas = append(deltas, []any{d.ID, d.Gen, d.Reset, d.FromVersion, d.MaxVersion, d.LastGC, d.Dead, entries})
	}
	return []any{uint64(magic), uint64(protocolVersion), uint64(m.Type), m.Cluster, m.From, m.Gen, m.Summary,
		digest(m.Digest), digest(m.Wants), deltas}
}

// fromDocValue is the inverse of docValue, for a value mpDecode checked
// against docLayout.
func fromDocValue(v []any) *message {
	digest := func(x any) []digestEntry {
		var es []digestEntry
		for _, e := range x.([]any) {
			f := e.([]any)
			es = append(es, digestEntry{ID: f[0].(string), Gen: f[1].(uint64), MaxVersion: f[2].(uint64), LastGC: f[3].(uint64)})
		}
		return es
	}
	m := &message{Type: msgType(v[2].(uint64)), Cluster: v[3].(string), From: v[4].(string),
		Gen: v[5].(uint64), Summary: v[6].(uint64), Digest: digest(v[7]), Wants: digest(v[8])}
	for _, x := range v[9].([]any) {
		f := x.([]any)
		d := nodeDelta{ID: f[0].(string), Gen: f[1].(uint64), Reset: f[2].(bool), FromVersion: f[3].(uint64),
			MaxVersion: f[4].(uint64), LastGC: f[5].(uint64), Dead: f[6].(uint64)}
		for _, y := range f[7].([]any) {
			e := y.([]any)
			d.Entries = append(d.Entries, wireEntry{Key: e[0].(string), Value: e[1].(string), Version: e[2].(uint64), Deleted: e[3].(bool)})
		}
		m.Deltas = append(m.Deltas, d)
	}
	return m
}

// mpDecode decodes raw with msgpack/v5 as the shape s, checking the msgpack
// type of every value against the document before msgpack/v5 converts it.
func mpDecode(raw msgpack.RawMessage, s mpShape, path string) (any, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("%s: empty", path)
	}
	c := raw[0]
	switch s.kind {
	case mpUint:
		if c > msgpcode.PosFixedNumHigh && (c < msgpcode.Uint8 || c > msgpcode.Uint64) {
			return nil, fmt.Errorf("%s: code %#x is not a msgpack uint", path, c)
		}
		var v uint64
		return v, msgpack.Unmarshal(raw, &v)
	case mpStr:
		if !msgpcode.IsString(c) {
			return nil, fmt.Errorf("%s: code %#x is not a msgpack str", path, c)
		}
		var v string
		return v, msgpack.Unmarshal(raw, &v)
	case mpBool:
		if c != msgpcode.True && c != msgpcode.False {
			return nil, fmt.Errorf("%s: code %#x is not a msgpack bool", path, c)
		}
		var v bool
		return v, msgpack.Unmarshal(raw, &v)
	}
	if !msgpcode.IsFixedArray(c) && c != msgpcode.Array16 && c != msgpcode.Array32 {
		return nil, fmt.Errorf("%s: code %#x is not a msgpack array", path, c)
	}
	var elems []msgpack.RawMessage
	if err := msgpack.Unmarshal(raw, &elems); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if s.kind == mpTuple && len(elems) != len(s.fields) {
		return nil, fmt.Errorf("%s: %d elements, the document lists %d", path, len(elems), len(s.fields))
	}
	out := []any{}
	for i, e := range elems {
		es, p := s.elem, fmt.Sprintf("%s[%d]", path, i)
		if s.kind == mpTuple {
			es, p = &s.fields[i], path+"."+s.fields[i].name
		}
		v, err := mpDecode(e, *es, p)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// mpEncoder writes a docValue with msgpack/v5 following docLayout. Each
// uint takes a random width that holds it (msgpack allows any); the value
// numbered bad in pre-order (the message itself is 0), if not -1, is
// written in the forbidden form numbered form instead (see forbidden).
type mpEncoder struct {
	enc  *msgpack.Encoder
	rng  *rand.Rand
	bad  int
	form int
	n    int      // values written so far
	hit  *mpShape // the shape written at bad
	path string   // and its position, by field names
}

func (w *mpEncoder) encode(v any, s *mpShape, path string) error {
	i := w.n
	w.n++
	if i == w.bad {
		w.hit, w.path = s, path
		return forbidden(w.enc, s.kind, w.form, v)
	}
	switch s.kind {
	case mpUint:
		u := v.(uint64)
		switch w.rng.IntN(5) {
		case 0:
			if u <= math.MaxUint8 {
				return w.enc.EncodeUint8(uint8(u))
			}
		case 1:
			if u <= math.MaxUint16 {
				return w.enc.EncodeUint16(uint16(u))
			}
		case 2:
			if u <= math.MaxUint32 {
				return w.enc.EncodeUint32(uint32(u))
			}
		case 3:
			return w.enc.EncodeUint64(u)
		}
		return w.enc.EncodeUint(u)
	case mpStr:
		return w.enc.EncodeString(v.(string))
	case mpBool:
		return w.enc.EncodeBool(v.(bool))
	}
	elems := v.([]any)
	if err := w.enc.EncodeArrayLen(len(elems)); err != nil {
		return err
	}
	for j, e := range elems {
		es, p := s.elem, fmt.Sprintf("%s[%d]", path, j)
		if s.kind == mpTuple {
			es, p = &s.fields[j], path+"."+s.fields[j].name
		}
		if err := w.encode(e, es, p); err != nil {
			return err
		}
	}
	return nil
}

// forbiddenForms is how many forbidden forms forbidden has for each kind.
var forbiddenForms = map[mpKind]int{mpUint: 6, mpStr: 2, mpBool: 3, mpTuple: 2, mpList: 2}

// forbidden writes, with msgpack/v5, form number form of the forms
// docs/protocol.md forbids for a value of kind k whose documented value is v.
func forbidden(enc *msgpack.Encoder, k mpKind, form int, v any) error {
	switch k {
	case mpUint:
		u := v.(uint64)
		switch form {
		case 0:
			return enc.EncodeInt(-1) // negative fixint: -1, not 2^64-1
		case 1:
			return enc.EncodeInt8(int8(u & 0x7f)) // the same number, signed
		case 2:
			return enc.EncodeInt64(int64(u >> 1))
		case 3:
			return enc.EncodeInt(math.MinInt64)
		case 4:
			return enc.EncodeFloat64(float64(u))
		}
		return enc.EncodeNil()
	case mpStr:
		if form == 0 {
			return enc.EncodeBytes([]byte(v.(string))) // bin
		}
		return enc.EncodeNil()
	case mpBool:
		switch form {
		case 0:
			return enc.EncodeNil()
		case 1:
			return enc.EncodeUint(1)
		}
		return enc.EncodeString("true")
	}
	if form == 0 {
		return enc.EncodeNil() // nil for an array, even an empty one
	}
	return enc.EncodeMapLen(0)
}

// mpValues is the number of values of m in the documented layout, the
// message itself and every array included.
func mpValues(m *message) int {
	w := &mpEncoder{enc: msgpack.NewEncoder(&bytes.Buffer{}), rng: rand.New(rand.NewPCG(0, 0)), bad: -1}
	if err := w.encode(docValue(m), &docLayout, "message"); err != nil {
		panic(err)
	}
	return w.n
}

// mpEncode encodes m with msgpack/v5 from the documented layout, the value
// numbered bad in a forbidden form (-1: none). It returns the shape and
// position of the value written badly, nil if bad is past the last value.
func mpEncode(t *testing.T, rng *rand.Rand, m *message, bad, form int) ([]byte, *mpShape, string) {
	t.Helper()
	var buf bytes.Buffer
	w := &mpEncoder{enc: msgpack.NewEncoder(&buf), rng: rng, bad: bad, form: form}
	if err := w.encode(docValue(m), &docLayout, "message"); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), w.hit, w.path
}

// The same layout as Go structs, encoded by msgpack/v5 itself as arrays
// (Encoder.UseArrayEncodedStructs): how a msgpack/v5 user would write it.
type (
	mpMessage struct {
		Magic, Version, Type uint64
		Cluster, From        string
		Gen, Summary         uint64
		Digest, Wants        []mpDigestEntry
		Deltas               []mpDelta
	}
	mpDigestEntry struct {
		ID                      string
		Gen, MaxVersion, LastGC uint64
	}
	mpDelta struct {
		ID                              string
		Gen                             uint64
		Reset                           bool
		FromVersion, MaxVersion, LastGC uint64
		Dead                            uint64
		Entries                         []mpEntry
	}
	mpEntry struct {
		Key, Value string
		Version    uint64
		Deleted    bool
	}
)

// mpStruct is m as mpMessage; empty arrays are empty slices, not nil
// (msgpack/v5 writes a nil slice as nil, which the document forbids).
func mpStruct(m *message) mpMessage {
	digest := func(es []digestEntry) []mpDigestEntry {
		out := []mpDigestEntry{}
		for _, e := range es {
			out = append(out, mpDigestEntry(e))
		}
		return out
	}
	s := mpMessage{Magic: magic, Version: protocolVersion, Type: uint64(m.Type), Cluster: m.Cluster, From: m.From,
		Gen: m.Gen, Summary: m.Summary, Digest: digest(m.Digest), Wants: digest(m.Wants), Deltas: []mpDelta{}}
	for _, d := range m.Deltas {
		md := mpDelta{d.ID, d.Gen, d.Reset, d.FromVersion, d.MaxVersion, d.LastGC, d.Dead, []mpEntry{}}
		for _, e := range d.Entries {
			md.Entries = append(md.Entries, mpEntry(e))
		}
		s.Deltas = append(s.Deltas, md)
	}
	return s
}

// msgpackMessages returns random messages of every type: each type with
// random contents in every array, and as the type is sent (docs/protocol.md
// §3's table: the arrays it does not carry empty).
func msgpackMessages(rng *rand.Rand, perType int) []*message {
	var out []*message
	for t := msgSyn; t <= maxMsgType; t++ {
		for i := range perType {
			m := randomMessage(rng)
			m.Type = t
			if i%2 == 1 { // as sent
				switch t {
				case msgSyn:
					m.Deltas = nil
				case msgAck:
					m.Digest = nil
				case msgFull:
					m.Wants = nil
				case msgPing, msgProbe, msgProbeAck, msgProbeNack:
					m.Gen, m.Digest, m.Wants, m.Deltas = 0, nil, nil, nil
				case msgPingReq:
					m.Gen, m.Wants, m.Deltas = 0, nil, nil
					m.Digest = []digestEntry{{ID: "suspect", Gen: rng.Uint64()}}
				}
			}
			out = append(out, m)
		}
	}
	return out
}

// (a) Our encoding, decoded by msgpack/v5: the documented fields, in order,
// of the documented types, with the message's values.
func TestCodecDecodesWithMsgpack(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for i, m := range msgpackMessages(rng, 30) {
		b := encodeMsg(t, m)
		// One msgpack value, and nothing after it.
		dec := msgpack.NewDecoder(bytes.NewReader(b))
		raw, err := dec.DecodeRaw()
		if err != nil || len(raw) != len(b) {
			t.Fatalf("message %d (%v): msgpack/v5 reads %d of %d bytes as one value: %v", i, m.Type, len(raw), len(b), err)
		}
		v, err := mpDecode(raw, docLayout, "message")
		if err != nil {
			t.Fatalf("message %d (%v): not the documented layout: %v", i, m.Type, err)
		}
		f := v.([]any)
		if f[0] != uint64(magic) || f[1] != uint64(protocolVersion) {
			t.Fatalf("message %d: magic %v, version %v", i, f[0], f[1])
		}
		if d := cmp.Diff(m, fromDocValue(f)); d != "" {
			t.Fatalf("message %d (%v) as msgpack/v5 reads it (-sent +read):\n%s", i, m.Type, d)
		}
		// msgpack/v5's own struct-as-array decoding agrees.
		var s mpMessage
		if err := msgpack.Unmarshal(b, &s); err != nil {
			t.Fatalf("message %d: msgpack/v5 into structs: %v", i, err)
		}
		if d := cmp.Diff(mpStruct(m), s); d != "" {
			t.Fatalf("message %d (%v) as msgpack/v5 structs (-sent +read):\n%s", i, m.Type, d)
		}
	}
}

// (b) msgpack/v5's encoding of the documented layout, decoded by our codec.
func TestCodecReadsMsgpack(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for i, m := range msgpackMessages(rng, 30) {
		b, _, _ := mpEncode(t, rng, m, -1, 0)
		got, err := decodeMessage(b, len(b), "")
		if err != nil {
			t.Fatalf("message %d (%v), %d bytes from msgpack/v5: %v", i, m.Type, len(b), err)
		}
		if d := cmp.Diff(m, got); d != "" {
			t.Fatalf("message %d (%v) from msgpack/v5 (-encoded +decoded):\n%s", i, m.Type, d)
		}
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		enc.UseArrayEncodedStructs(true)
		enc.UseCompactInts(rng.IntN(2) == 0)
		if err := enc.Encode(mpStruct(m)); err != nil {
			t.Fatal(err)
		}
		got, err = decodeMessage(buf.Bytes(), buf.Len(), "")
		if err != nil {
			t.Fatalf("message %d (%v) from msgpack/v5 structs: %v", i, m.Type, err)
		}
		if d := cmp.Diff(m, got); d != "" {
			t.Fatalf("message %d (%v) from msgpack/v5 structs (-encoded +decoded):\n%s", i, m.Type, d)
		}
	}
}

// (c) Every forbidden form at every position of the layout, written by
// msgpack/v5, is refused: malformed, or, for the magic and the version,
// bad_magic and bad_version (they are read first, §3).
func TestCodecRefusesForbiddenMsgpackForms(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	covered := map[string]bool{} // layout position (field names), form
	for i, m := range msgpackMessages(rng, 4) {
		// Every value of the message in turn: at most 2 elements an
		// array keep it short, and every position of the layout is met.
		m.Digest, m.Wants, m.Deltas = m.Digest[:min(2, len(m.Digest))], m.Wants[:min(2, len(m.Wants))], m.Deltas[:min(2, len(m.Deltas))]
		for j := range m.Deltas {
			m.Deltas[j].Entries = m.Deltas[j].Entries[:min(2, len(m.Deltas[j].Entries))]
		}
		for bad := range mpValues(m) {
			for form := 0; ; form++ {
				b, hit, path := mpEncode(t, rng, m, bad, form)
				if form >= forbiddenForms[hit.kind] {
					break
				}
				want := "malformed"
				switch path {
				case "message.magic":
					want = "bad_magic"
				case "message.version":
					want = "bad_version"
				}
				_, err := decodeMessage(b, len(b)+1, "")
				if err == nil || dropReason(err) != want {
					t.Fatalf("message %d (%v): %s in forbidden form %d (% x...): got %v, want %s",
						i, m.Type, path, form, b[:min(len(b), 40)], err, want)
				}
				covered[fmt.Sprintf("%s/%d", layoutPosition(path), form)] = true
			}
		}
	}
	// Every position of the layout met every forbidden form of its kind.
	var walk func(s *mpShape, pos string)
	walk = func(s *mpShape, pos string) {
		for form := range forbiddenForms[s.kind] {
			if !covered[fmt.Sprintf("%s/%d", pos, form)] {
				t.Errorf("%s was never written in forbidden form %d", pos, form)
			}
		}
		switch s.kind {
		case mpTuple:
			for j := range s.fields {
				walk(&s.fields[j], pos+"."+s.fields[j].name)
			}
		case mpList:
			walk(s.elem, pos+"[]")
		}
	}
	walk(&docLayout, "message")

	// Why the codec is not msgpack/v5's decoder: msgpack/v5 reads a signed
	// -1 into a uint64 field as 2^64-1, where our codec refuses it.
	var gen uint64
	if err := msgpack.Unmarshal([]byte{0xff}, &gen); err != nil || gen != math.MaxUint64 {
		t.Errorf("msgpack/v5 reads -1 into a uint64 as %d (%v); codec.go's comment says 2^64-1", gen, err)
	}
}

// layoutPosition is a value's path with list indexes dropped:
// message.deltas[3].entries[0].key is message.deltas[].entries[].key.
func layoutPosition(path string) string {
	var out []byte
	for i := 0; i < len(path); i++ {
		if path[i] == '[' {
			for path[i] != ']' {
				i++
			}
			out = append(out, "[]"...)
			continue
		}
		out = append(out, path[i])
	}
	return string(out)
}
