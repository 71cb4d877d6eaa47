package luahealth

import (
	"strings"
	"testing"
	"time"
)

// The harness must be no more permissive than Argo CD, or a check that passes here fails there.
func TestEvaluateLikeArgoCD(t *testing.T) {
	obj, err := DecodeObject([]byte(`{"metadata": {"generation": 2}, "status": {"ratio": 0.5}}`))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, script, status, message, err string
	}{
		{"an integer from JSON equals a Lua integer", `return {status = obj.metadata.generation == 2 and "Healthy" or "Degraded"}`, "Healthy", "", ""},
		{"a fraction stays a fraction", `return {status = "Healthy", message = tostring(obj.status.ratio)}`, "Healthy", "0.5", ""},
		{"a missing field is nil", `return {status = obj.spec == nil and "Missing" or "Healthy"}`, "Missing", "", ""},
		{"the table library is there", `local t = {} table.insert(t, "x") return {status = "Healthy", message = t[1]}`, "Healthy", "x", ""},
		{"the string library is not", `return {status = string.upper("healthy")}`, "", "", "string"},
		{"a status Argo CD does not know becomes Unknown", `return {status = "Fine"}`, "Unknown", InvalidStatusMessage, ""},
		{"a script must return a table", `return "Healthy"`, "", "", "expect table output"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Evaluate(c.script, obj)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("want an error containing %q, got %v (%+v)", c.err, err, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != c.status || got.Message != c.message {
				t.Fatalf("got %+v, want {%s %s}", got, c.status, c.message)
			}
		})
	}
}

func TestEvaluateStopsAScriptThatNeverReturns(t *testing.T) {
	start := time.Now()
	_, err := Evaluate(`while true do end`, map[string]any{})
	if err == nil {
		t.Fatal("want an error from the deadline")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %s", d)
	}
}
