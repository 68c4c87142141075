package main

import (
	"log/slog"
	"syscall"
)

// Connections and the open-file limit. Go raises the soft limit of open
// files to the hard limit when a program starts (Linux, Go 1.19 and
// later); -http-max-conns is held below what remains, so that HTTP
// connections can never take the descriptors gossip, joins and the
// registry need, nor make accept fail.

// defaultMaxConns is the default of -http-max-conns: at about 10 KB each
// when idle, 1,024 connections take about 10 MB.
const defaultMaxConns = 1024

// fdReserve is what -http-max-conns leaves of the open-file limit for
// everything else.
const fdReserve = 256

// boundConns returns want, lowered to the open-file limit less fdReserve
// (at least 16) and logged when it is.
func boundConns(want int, log *slog.Logger) int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == ^uint64(0) {
		return want
	}
	if rl.Cur < rl.Max { // Go did not raise it (another OS, a wrapper): try
		raised := syscall.Rlimit{Cur: rl.Max, Max: rl.Max}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			rl = raised
		}
	}
	room := int(min(rl.Cur, 1<<30)) - fdReserve
	if room >= want {
		return want
	}
	room = max(room, 16)
	log.Warn("-http-max-conns lowered to fit the open-file limit (raise it with ulimit -n or LimitNOFILE= in systemd)",
		"http_max_conns", want, "lowered_to", room, "open_file_limit", rl.Cur)
	return room
}
