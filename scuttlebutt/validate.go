package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Validation shared by the API's bodies and the flags.

// maxRegistrationTTL is the longest TTL a registration may have: a record
// whose watcher is gone must not outlive a day (a TTL of 2562047h is the
// year 2319).
const maxRegistrationTTL = 24 * time.Hour

// decodeStrict decodes one JSON value of body into v: unknown fields and
// anything after the value (but white space) are refused.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("data after the JSON value (at byte %d)", dec.InputOffset())
	}
	return nil
}

// checkJoinHost refuses a -join address whose host is neither an IP
// address nor a host name (such as "::::").
func checkJoinHost(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if net.ParseIP(host) != nil || isHostName(host) {
		return nil
	}
	return fmt.Errorf("-join %q: host %q is neither an IP address nor a host name; want host:port, e.g. 10.0.0.7:%s", addr, host, defaultGossipPort)
}

// isHostName reports whether s is a DNS host name: labels of letters,
// digits, '-' and '_' (not at the ends of a label), at most 253 bytes.
func isHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
