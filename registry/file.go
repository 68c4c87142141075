package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// File is a registry in a directory, typically on a filesystem the nodes
// share (NFS, CephFS, a volume of a container host): file:///path.
//
// Heartbeats are files agents/<ID>.json, written to a temporary file and
// renamed over the old one. A server slot is a directory servers/<slot>/
// of numbered versions, 00000000000000000001.json and up; the highest is
// the slot's entry. A claim reads the highest version n and creates n+1
// with link(2), which fails if n+1 exists: of two claimers that read the
// same n, exactly one creates n+1, and the other gets ErrTaken. That is
// S3's If-Match on the version number, and needs of the filesystem only
// that link and rename are atomic (POSIX; NFS, CephFS and local disks are).
// Older versions are removed after each write.
//
// An entry's age is its file's mtime against the mtime of a probe file
// written now in the same directory: both are stamped by the file system
// (on NFS, by the server), so no node's clock enters the comparison.
type File struct {
	dir string
	// clock, in tests only, stamps the files this store writes and is
	// its time; nil: the file system's own.
	clock func() time.Time
}

var _ Registry = (*File)(nil)

// NewFile returns the registry in dir. The directory must exist when it is
// used; it is never created, since a missing directory usually means a
// shared filesystem that is not mounted.
func NewFile(dir string) *File { return &File{dir: filepath.Clean(dir)} }

// openFile opens a file:///path URL.
func openFile(_ context.Context, u *url.URL) (Registry, error) {
	if u.Host != "" && u.Host != "localhost" {
		return nil, fmt.Errorf("registry %s: a file URL has no host; want file:///absolute/path", u.Redacted())
	}
	if u.Opaque != "" || !strings.HasPrefix(u.Path, "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("registry %s: want an absolute path, file:///absolute/path", u.Redacted())
	}
	return NewFile(u.Path), nil
}

// mkdir creates the subdirectories of the registry in sub, but not the
// registry's own directory.
func (f *File) mkdir(sub ...string) (string, error) {
	dir := f.dir
	for _, s := range sub {
		dir = filepath.Join(dir, s)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", f.fail("creating a directory in", err)
		}
	}
	return dir, nil
}

// String returns the registry's URL.
func (f *File) String() string { return (&url.URL{Scheme: "file", Path: f.dir}).String() }

// Put writes e as node e.ID's heartbeat.
func (f *File) Put(ctx context.Context, e Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := encodeEntry(e)
	if err != nil {
		return fmt.Errorf("registry: heartbeat of %q: %w", e.ID, err)
	}
	dir, err := f.mkdir(AgentsDir)
	if err != nil {
		return err
	}
	tmp, err := f.writeTemp(dir, b)
	if err != nil {
		return f.fail("writing a heartbeat in", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, heartbeatName(e.ID))); err != nil {
		os.Remove(tmp)
		return f.fail("writing a heartbeat in", err)
	}
	return nil
}

// Delete removes node e.ID's heartbeat.
func (f *File) Delete(ctx context.Context, e Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := os.Remove(filepath.Join(f.dir, AgentsDir, heartbeatName(e.ID)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return f.fail("deleting a heartbeat in", err)
	}
	return nil
}

// List returns the slots and the heartbeats.
func (f *File) List(ctx context.Context) ([]Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(f.dir); err != nil {
		return nil, f.fail("reading", err)
	}
	now := f.now()
	var out []Entry
	var bad []error
	slots, err := os.ReadDir(filepath.Join(f.dir, ServersDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, f.fail("reading", err)
	}
	for _, d := range slots {
		slot, err := strconv.Atoi(d.Name())
		if err != nil || slot < 0 || !d.IsDir() {
			continue
		}
		v, e, err := f.latest(slot, now)
		switch {
		case err != nil && !errors.Is(err, ErrBadEntry):
			return nil, err
		case err != nil:
			bad = append(bad, err)
		case v > 0:
			out = append(out, *e)
		}
	}
	beats, err := os.ReadDir(filepath.Join(f.dir, AgentsDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, f.fail("reading", err)
	}
	for _, d := range beats {
		if strings.HasPrefix(d.Name(), ".") || d.IsDir() {
			continue
		}
		key := AgentsDir + d.Name()
		if _, ok := idOfHeartbeat(d.Name()); !ok {
			bad = append(bad, &EntryError{Key: key, Err: errors.New("not a heartbeat's name (<ID>.json)")})
			continue
		}
		b, mtime, err := readLimited(filepath.Join(f.dir, AgentsDir, d.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted since the listing
		}
		if err != nil {
			return nil, f.fail("reading", err)
		}
		e, err := decodeEntry(key, b)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		e.aged(mtime, now)
		out = append(out, e)
	}
	sortEntries(out)
	return out, errors.Join(bad...)
}

// Claim makes e the holder of slot.
func (f *File) Claim(ctx context.Context, slot int, e Entry, expiry time.Duration) error {
	return f.write(ctx, slot, e, claimable(e, expiry))
}

// Release gives up slot if e.ID holds it.
func (f *File) Release(ctx context.Context, slot int, e Entry) error {
	e.Released = true
	return f.write(ctx, slot, e, releasable(e))
}

// write writes e as the next version of slot if decide, given the current
// entry (nil: none, or unparseable), says so.
func (f *File) write(ctx context.Context, slot int, e Entry, decide func(cur *Entry) (bool, error)) error {
	if slot < 0 {
		return fmt.Errorf("registry: slot %d: want 0 or more", slot)
	}
	b, err := encodeEntry(e)
	if err != nil {
		return fmt.Errorf("registry: claim of %q: %w", e.ID, err)
	}
	dir, err := f.mkdir(ServersDir, strconv.Itoa(slot))
	if err != nil {
		return err
	}
	for range claimAttempts {
		if err := ctx.Err(); err != nil {
			return err
		}
		v, cur, err := f.latest(slot, f.now())
		if err != nil && !errors.Is(err, ErrBadEntry) {
			return err
		}
		ok, err := decide(cur)
		if !ok || err != nil {
			return err
		}
		err = f.create(dir, v+1, b)
		if errors.Is(err, fs.ErrExist) {
			continue // another node wrote version v+1 first: read it
		}
		if err != nil {
			return f.fail("claiming a slot in", err)
		}
		f.prune(dir, v+1)
		return nil
	}
	return ErrTaken
}

func (f *File) slotDir(slot int) string {
	return filepath.Join(f.dir, ServersDir, strconv.Itoa(slot))
}

// versionName is the file name of version v of a slot.
func versionName(v uint64) string { return fmt.Sprintf("%020d.json", v) }

// versions returns the versions present in a slot's directory, highest
// first.
func versions(dir string) ([]uint64, error) {
	ds, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var vs []uint64
	for _, d := range ds {
		base, ok := strings.CutSuffix(d.Name(), ".json")
		if !ok || len(base) != 20 {
			continue
		}
		if v, err := strconv.ParseUint(base, 10, 64); err == nil && v > 0 {
			vs = append(vs, v)
		}
	}
	slices.Sort(vs)
	slices.Reverse(vs)
	return vs, nil
}

// latest returns the highest version of slot and its entry, aged at now
// (the file system's time; zero: not aged): 0 and nil for a slot never
// written; v and nil with an *EntryError for one that does not parse.
func (f *File) latest(slot int, now time.Time) (uint64, *Entry, error) {
	dir := f.slotDir(slot)
	for {
		vs, err := versions(dir)
		if err != nil {
			return 0, nil, f.fail("reading", err)
		}
		if len(vs) == 0 {
			return 0, nil, nil
		}
		b, mtime, err := readLimited(filepath.Join(dir, versionName(vs[0])))
		if errors.Is(err, fs.ErrNotExist) {
			continue // pruned after a newer version was written: read again
		}
		if err != nil {
			return 0, nil, f.fail("reading", err)
		}
		key := fmt.Sprintf("%s%d/%s", ServersDir, slot, versionName(vs[0]))
		e, err := decodeEntry(key, b)
		if err != nil {
			return vs[0], nil, err
		}
		e.Slot = slot
		e.aged(mtime, now)
		return vs[0], &e, nil
	}
}

// create writes version v of a slot in dir, failing with fs.ErrExist if it
// exists: the file is written in full under a temporary name, then linked.
func (f *File) create(dir string, v uint64, b []byte) error {
	tmp, err := f.writeTemp(dir, b)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	return os.Link(tmp, filepath.Join(dir, versionName(v)))
}

// prune removes the versions of a slot below v.
func (f *File) prune(dir string, v uint64) {
	vs, _ := versions(dir)
	for _, old := range vs {
		if old < v {
			os.Remove(filepath.Join(dir, versionName(old)))
		}
	}
}

func (f *File) fail(what string, err error) error {
	if _, serr := os.Stat(f.dir); errors.Is(serr, fs.ErrNotExist) {
		return fmt.Errorf("registry %s: the directory %s does not exist: create it (mkdir -p), or check that the shared filesystem is mounted: %w", f.String(), f.dir, err)
	}
	return fmt.Errorf("registry %s: %s %s: %w (check that this user may read and write it)", f.String(), what, f.dir, err)
}

// writeTemp writes b to a new hidden file in dir and returns its path.
func (f *File) writeTemp(dir string, b []byte) (string, error) {
	t, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", err
	}
	_, err = t.Write(b)
	if err == nil {
		err = t.Sync()
	}
	if cerr := t.Close(); err == nil {
		err = cerr
	}
	if err == nil && f.clock != nil {
		now := f.clock()
		err = os.Chtimes(t.Name(), now, now)
	}
	if err != nil {
		os.Remove(t.Name())
		return "", err
	}
	return t.Name(), nil
}

// readLimited reads a file, at most MaxEntrySize+1 bytes (more does not
// parse anyway), and returns its mtime too.
func readLimited(path string) ([]byte, time.Time, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	b, err := io.ReadAll(io.LimitReader(fh, MaxEntrySize+1))
	return b, st.ModTime(), err
}

// now returns the file system's time: the mtime of a probe file written
// now in the registry's directory, the clock that stamped every entry's
// mtime (on a shared file system, the server's). Zero if the probe cannot
// be written (a read-only mount): entries are then aged by their Time.
func (f *File) now() time.Time {
	if f.clock != nil {
		return f.clock()
	}
	tmp, err := f.writeTemp(f.dir, nil)
	if err != nil {
		return time.Time{}
	}
	defer os.Remove(tmp)
	st, err := os.Stat(tmp)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}
