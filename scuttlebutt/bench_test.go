package main

import (
	"os/exec"
	"regexp"
	"testing"
)

// TestBenchCommands runs bench-http and bench-dns on a small cluster, as
// README's figures run them on a large one: both start their cluster, load
// the agent and report, with no error.
func TestBenchCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts clusters: skipped with -short")
	}
	bin := binary(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench-http", "-cluster", "4", "-instances", "40", "-d", "1s", "-c", "2", "-gzip"}, `(?s)sees 4 live nodes and 40 instances.*requests +\d+ \(0 errors\).*agent RSS`},
		{[]string{"bench-dns", "-cluster", "4", "-instances", "40", "-services", "5", "-d", "1s", "-c", "2"}, `(?s)sees 4 live nodes and 40 instances.*queries +\d+ \(0 errors.*agent RSS`},
	} {
		out, err := exec.Command(bin, tc.args...).CombinedOutput()
		if err != nil || !regexp.MustCompile(tc.want).Match(out) {
			t.Errorf("%v: %v\n%s", tc.args, err, out)
		}
	}
}
