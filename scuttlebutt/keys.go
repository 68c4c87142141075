package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/scuttlebutt-go/scuttlebutt"
)

// Gossip encryption in the daemon: -encrypt, -keyring-file, the /v1/keys
// endpoints, `scuttlebutt keygen` and `scuttlebutt keys`.

// parseKey decodes a base64 key of 16, 24 or 32 bytes.
func parseKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("the key is not base64 (make one with `scuttlebutt keygen`): %v", err)
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("the key is %d bytes; want 16, 24 or 32 (make one with `scuttlebutt keygen`)", len(key))
}

// newKey returns a random 32-byte key, base64.
func newKey() string {
	key := make([]byte, 32)
	rand.Read(key)
	return base64.StdEncoding.EncodeToString(key)
}

// keyringFile is the content of -keyring-file: the keys, base64, the
// primary first.
type keyringFile struct {
	Keys []string `json:"keys"`
}

// loadKeyring reads a keyring file. It refuses a file that others than its
// owner may read: the keys are the cluster's secret.
func loadKeyring(path string) (*scuttlebutt.Keyring, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("-keyring-file %s is readable by others (mode %v); run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f keyringFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("-keyring-file %s: not a keyring (%v)", path, err)
	}
	if len(f.Keys) == 0 {
		return nil, fmt.Errorf("-keyring-file %s holds no key", path)
	}
	var keys [][]byte
	for i, s := range f.Keys {
		k, err := parseKey(s)
		if err != nil {
			return nil, fmt.Errorf("-keyring-file %s, key %d: %v", path, i+1, err)
		}
		keys = append(keys, k)
	}
	return scuttlebutt.NewKeyring(keys[0], keys[1:]...)
}

// saveKeyring writes a keyring file, mode 0600, atomically.
func saveKeyring(path string, kr *scuttlebutt.Keyring) error {
	var f keyringFile
	for _, k := range kr.Keys() {
		f.Keys = append(f.Keys, base64.StdEncoding.EncodeToString(k))
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".keyring-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// encryptionFlags are the agent's flags of gossip encryption.
type encryptionFlags struct {
	key             string
	file            string
	acceptPlaintext bool
	sendPlaintext   bool
}

func (e *encryptionFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&e.key, "encrypt", "", "base64 `key` (16, 24 or 32 bytes; `scuttlebutt keygen` makes one) that encrypts and authenticates all gossip; every node needs it")
	fs.StringVar(&e.file, "keyring-file", "", "`file` that keeps the keyring across restarts (created from -encrypt, mode 0600; key changes through `scuttlebutt keys` are saved there)")
	fs.BoolVar(&e.acceptPlaintext, "encrypt-accept-plaintext", false, "with -encrypt: also accept unencrypted gossip (while moving a running cluster to encryption)")
	fs.BoolVar(&e.sendPlaintext, "encrypt-send-plaintext", false, "with -encrypt and -encrypt-accept-plaintext: send unencrypted gossip (the first step of that move)")
}

// keyring returns the keyring the flags describe (nil: no encryption), and
// writes the keyring file when it is to be created.
func (e *encryptionFlags) keyring() (*scuttlebutt.Keyring, error) {
	var key []byte
	if e.key != "" {
		k, err := parseKey(e.key)
		if err != nil {
			return nil, fmt.Errorf("-encrypt: %v", err)
		}
		key = k
	}
	if e.file != "" {
		kr, err := loadKeyring(e.file)
		switch {
		case err == nil:
			if key != nil {
				// The file wins (it holds the latest rotation); the
				// flag's key still decrypts.
				if err := kr.Install(key); err != nil {
					return nil, err
				}
			}
			return kr, nil
		case !errors.Is(err, fs.ErrNotExist):
			return nil, err
		case key == nil:
			return nil, fmt.Errorf("-keyring-file %s does not exist; give -encrypt KEY once to create it", e.file)
		}
		kr, err = scuttlebutt.NewKeyring(key)
		if err != nil {
			return nil, err
		}
		if err := saveKeyring(e.file, kr); err != nil {
			return nil, fmt.Errorf("-keyring-file: %v", err)
		}
		return kr, nil
	}
	if key == nil {
		if e.acceptPlaintext || e.sendPlaintext {
			return nil, errors.New("-encrypt-accept-plaintext and -encrypt-send-plaintext need -encrypt or -keyring-file")
		}
		return nil, nil
	}
	return scuttlebutt.NewKeyring(key)
}

// keyManager changes the running keyring for the HTTP API and saves it.
type keyManager struct {
	mu   sync.Mutex // one change at a time, each saved before the next
	kr   *scuttlebutt.Keyring
	file string // "" when not persisted
	log  *slog.Logger
}

// keyView is one key as the API shows it: never the key itself.
type keyView struct {
	Fingerprint string `json:"fingerprint"`
	Primary     bool   `json:"primary"`
}

func (m *keyManager) list() []keyView {
	var out []keyView
	for i, k := range m.kr.Keys() {
		out = append(out, keyView{Fingerprint: scuttlebutt.Fingerprint(k), Primary: i == 0})
	}
	return out
}

// find returns the installed key with a fingerprint.
func (m *keyManager) find(fp string) ([]byte, bool) {
	for _, k := range m.kr.Keys() {
		if scuttlebutt.Fingerprint(k) == fp {
			return k, true
		}
	}
	return nil, false
}

// change applies f and saves the keyring.
func (m *keyManager) change(what string, f func() error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := f(); err != nil {
		return err
	}
	m.log.Info("keyring changed", "change", what, "primary", scuttlebutt.Fingerprint(m.kr.Keys()[0]), "keys", len(m.kr.Keys()))
	if m.file != "" {
		if err := saveKeyring(m.file, m.kr); err != nil {
			return fmt.Errorf("the keyring changed but could not be saved to %s: %v", m.file, err)
		}
	}
	return nil
}

// handleKeys lists the keys (fingerprints only).
func (s *server) handleKeys(w http.ResponseWriter, r *http.Request) {
	if s.keys == nil {
		writeError(w, http.StatusConflict, "this agent does not encrypt gossip; start it with -encrypt or -keyring-file")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": s.keys.list()})
}

// handleKeyInstall installs the key of the body {"key": "<base64>"}.
func (s *server) handleKeyInstall(w http.ResponseWriter, r *http.Request) {
	if s.keys == nil {
		s.handleKeys(w, r)
		return
	}
	body, ok := readBody(w, r, 1024)
	if !ok {
		return
	}
	var req struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, `want a JSON body {"key": "<base64>"}: `+err.Error())
		return
	}
	key, err := parseKey(req.Key)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	fp := scuttlebutt.Fingerprint(key)
	err = s.keys.change("install "+fp, func() error { return s.keys.kr.Install(key) })
	if errors.Is(err, scuttlebutt.ErrKeyringFull) {
		writeError(w, http.StatusConflict, fmt.Sprintf("the keyring holds %d keys, the most it takes (scuttlebutt.MaxKeys): "+
			"remove one first (`scuttlebutt keys remove FINGERPRINT`)", scuttlebutt.MaxKeys))
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"installed": fp, "keys": s.keys.list()})
}

// handleKeyUse makes the installed key {fingerprint} primary.
func (s *server) handleKeyUse(w http.ResponseWriter, r *http.Request) {
	s.keyChange(w, r, "use", func(k []byte) error { return s.keys.kr.Use(k) })
}

// handleKeyRemove removes the installed key {fingerprint}.
func (s *server) handleKeyRemove(w http.ResponseWriter, r *http.Request) {
	s.keyChange(w, r, "remove", func(k []byte) error { return s.keys.kr.Remove(k) })
}

func (s *server) keyChange(w http.ResponseWriter, r *http.Request, what string, f func([]byte) error) {
	if s.keys == nil {
		s.handleKeys(w, r)
		return
	}
	fp := r.PathValue("fingerprint")
	key, ok := s.keys.find(fp)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no installed key has the fingerprint %q (see `scuttlebutt keys list`)", fp))
		return
	}
	err := s.keys.change(what+" "+fp, func() error { return f(key) })
	switch {
	case errors.Is(err, scuttlebutt.ErrRemovePrimary):
		writeError(w, http.StatusConflict, "the primary key cannot be removed: make another key primary first (`scuttlebutt keys use`)")
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
	default:
		writeJSON(w, http.StatusOK, map[string]any{"keys": s.keys.list()})
	}
}

// runKeygen is `scuttlebutt keygen`: a new random key for -encrypt.
func runKeygen(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "scuttlebutt keygen: takes no arguments; it prints a new random 32-byte key, base64, for -encrypt")
		return exitUsage
	}
	fmt.Fprintln(stdout, newKey())
	return exitOK
}

const keysUsage = `Usage: scuttlebutt keys list|install|use|remove [flags] [KEY|FINGERPRINT]

Changes the keyring of the local agent (run it on every node, one step on
all nodes before the next):
  scuttlebutt keys list                 the keys, by fingerprint; the primary first
  scuttlebutt keys install KEY          add a key that decrypts
  scuttlebutt keys use KEY|FINGERPRINT  make an installed key the one that encrypts
  scuttlebutt keys remove KEY|FINGERPRINT  remove a key that is not primary

KEY is base64, as printed by scuttlebutt keygen. These are writes: the token
rules of the HTTP API apply (-token, SCUTTLEBUTT_TOKEN).
`

// runKeys is `scuttlebutt keys`.
func runKeys(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		fmt.Fprint(stderr, keysUsage)
		return exitUsage
	}
	sub, args := args[0], args[1:]
	c := &cli{stdout: stdout, stderr: stderr, name: "keys " + sub}
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.flags(fs)
	pos, err := parseFlags(fs, args, cliEnv)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return c.usageErr("%v", err)
	}
	var out struct {
		Keys []keyView `json:"keys"`
	}
	var raw []byte
	switch sub {
	case "list":
		if len(pos) != 0 {
			return c.usageErr("takes no arguments")
		}
		raw, err = c.do(http.MethodGet, "/v1/keys", nil, nil, &out)
	case "install":
		if len(pos) != 1 {
			return c.usageErr("want KEY (base64, from scuttlebutt keygen)")
		}
		if _, err := parseKey(pos[0]); err != nil {
			return c.usageErr("%v", err)
		}
		raw, err = c.do(http.MethodPost, "/v1/keys", nil, map[string]string{"key": pos[0]}, &out)
	case "use", "remove":
		if len(pos) != 1 {
			return c.usageErr("want KEY or FINGERPRINT")
		}
		fp := pos[0]
		if key, err := parseKey(fp); err == nil {
			fp = scuttlebutt.Fingerprint(key)
		}
		method, path := http.MethodPost, "/v1/keys/"+fp+"/use"
		if sub == "remove" {
			method, path = http.MethodDelete, "/v1/keys/"+fp
		}
		raw, err = c.do(method, path, nil, nil, &out)
	default:
		fmt.Fprintf(stderr, "scuttlebutt keys: unknown command %q\n\n%s", sub, keysUsage)
		return exitUsage
	}
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.printJSON(raw)
	}
	tw := c.table()
	fmt.Fprintln(tw, "FINGERPRINT\tPRIMARY")
	for _, k := range out.Keys {
		fmt.Fprintf(tw, "%s\t%v\n", k.Fingerprint, k.Primary)
	}
	tw.Flush()
	return exitOK
}
