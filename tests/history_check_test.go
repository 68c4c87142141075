package tests

import (
	"strings"
	"testing"
)

// The history checker accepts what it must and refuses what it must.
func TestHistoryCheck(t *testing.T) {
	ok, put, del := acked, opPut, opDelete
	type w struct {
		kind             opKind
		node, key, value string
		out              outcome
	}
	base := []w{
		{put, "a", "h/1", "a1", ok},
		{put, "a", "h/1", "a2", ok},
		{put, "a", "h/2", "x", ok},
		{del, "a", "h/2", "", ok},
		{put, "b", "h/1", "b1", ok},
		{put, "b", "h/1", "b2", failed},
		{put, "b", "h/3", "b3", unknown},
	}
	good := func() map[string]view {
		vs := map[string]view{}
		for _, viewer := range []string{"a", "b"} {
			vs[viewer] = view{
				status: map[string]string{"a": "alive", "b": "alive"},
				keys: map[string]map[string]string{
					"a": {"h/1": "a2", ":lib": "ignored"},
					"b": {"h/1": "b1"},
				},
			}
		}
		return vs
	}
	for _, tc := range []struct {
		name    string
		extra   []w
		restart string
		change  func(map[string]view)
		want    string // a problem that must be reported; "" for none
	}{
		{name: "converged", want: ""},
		{name: "unknown write applied everywhere", change: func(vs map[string]view) {
			vs["a"].keys["b"]["h/3"] = "b3"
			vs["b"].keys["b"]["h/3"] = "b3"
		}},
		{name: "lost write", change: func(vs map[string]view) { vs["b"].keys["a"]["h/1"] = "a1" },
			want: `b holds a's key "h/1" = "a1", want "a2"`},
		{name: "lost everywhere", change: func(vs map[string]view) {
			delete(vs["a"].keys["a"], "h/1")
			delete(vs["b"].keys["a"], "h/1")
		}, want: `a holds a's key "h/1" = (absent), want "a2"`},
		{name: "deleted key back", change: func(vs map[string]view) { vs["a"].keys["a"]["h/2"] = "x" },
			want: `a holds a's key "h/2" = "x", want (absent)`},
		{name: "refused write applied", change: func(vs map[string]view) { vs["a"].keys["b"]["h/1"] = "b2" },
			want: `a holds b's key "h/1" = "b2", want "b1"`},
		{name: "invented key", change: func(vs map[string]view) { vs["b"].keys["a"]["h/9"] = "?" },
			want: `b holds a's key "h/9" = "?", never acknowledged`},
		{name: "unknown write on one node only", change: func(vs map[string]view) { vs["b"].keys["b"]["h/3"] = "b3" },
			want: `a holds b's key "h/3" = (absent), b itself holds "b3"`},
		{name: "false death", change: func(vs map[string]view) { vs["a"].status["b"] = "dead" },
			want: `a sees live node b as "dead"`},
		{name: "restart forgets", restart: "a", change: func(vs map[string]view) {
			delete(vs["a"].keys["a"], "h/1")
			delete(vs["b"].keys["a"], "h/1")
		}},
		{name: "restart keeps nothing", restart: "a", want: `a holds a's key "h/1" = "a2", never acknowledged`},
		{name: "write after restart", restart: "a", extra: []w{{put, "a", "h/1", "a3", ok}}, change: func(vs map[string]view) {
			vs["a"].keys["a"]["h/1"] = "a3"
			vs["b"].keys["a"]["h/1"] = "a3"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHistory()
			for _, op := range base {
				h.complete(h.invoke(op.kind, op.node, op.key, op.value), op.out, "")
			}
			if tc.restart != "" {
				h.restarted(tc.restart)
			}
			for _, op := range tc.extra {
				h.complete(h.invoke(op.kind, op.node, op.key, op.value), op.out, "")
			}
			vs := good()
			if tc.change != nil {
				tc.change(vs)
			}
			problems := h.check([]string{"a", "b"}, vs, "h/")
			all := strings.Join(problems, "\n")
			switch {
			case tc.want == "" && len(problems) > 0:
				t.Fatalf("a good history failed:\n%s\nhistory:\n%s", all, h)
			case tc.want != "" && !strings.Contains(all, tc.want):
				t.Fatalf("want the problem %q, got:\n%s\nhistory:\n%s", tc.want, all, h)
			}
		})
	}
}
