package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// The CLI's honesty towards scripts: an answer that is not an agent's is
// said to be so (exit 1, not "not found"), a failed write of the output
// fails the command, and strings from the cluster are printed escaped when
// they hold control characters, so that a key cannot drive the terminal.

// notAgentError is an answer that did not come from a scuttlebutt agent:
// not JSON, or JSON without the agent's error field.
type notAgentError struct {
	addr  string
	code  int
	ctype string
}

func (e *notAgentError) Error() string {
	ct := e.ctype
	if ct == "" {
		ct = "no content type"
	}
	return fmt.Sprintf("not a scuttlebutt agent at %s: it answered HTTP %d with %s, not the agent's JSON (is -addr or SCUTTLEBUTT_ADDR right?)",
		e.addr, e.code, ct)
}

// outputWriter remembers the first error of the writes to it; the command
// then exits non-zero (a full disk, a closed pipe, > /dev/full).
type outputWriter struct {
	w   io.Writer
	mu  sync.Mutex
	err error
}

func (o *outputWriter) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	o.err = err
	return n, err
}

// failed returns the first write error, if any.
func (o *outputWriter) failed() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

// printable returns s as is when it is valid UTF-8 without control
// characters, else quoted with Go escapes ("\x1b[31m"), so that printing
// it cannot move the cursor, change colours or hide text. A string that
// starts with a quote is quoted too, so that the two cannot be confused.
func printable(s string) string {
	if !utf8.ValidString(s) || strings.HasPrefix(s, `"`) || strings.IndexFunc(s, func(r rune) bool {
		return !unicode.IsPrint(r) && r != ' '
	}) >= 0 {
		return strconv.Quote(s)
	}
	return s
}
