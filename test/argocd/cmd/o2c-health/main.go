// o2c-health prints the Argo CD health of Kubernetes objects as a Lua health check computes it:
//
//	o2c-health SCRIPT.lua OBJECT.json...
//
// One JSON line per object, {"file", "status", "message"} or {"file", "error"}, in argument order;
// the exit code is non-zero only when the script or an object cannot be read.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"o2c.dev/test/argocd/luahealth"
)

type result struct {
	File string `json:"file"`
	luahealth.Status
	Error string `json:"error,omitempty"`
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: o2c-health SCRIPT.lua OBJECT.json...")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out := json.NewEncoder(os.Stdout)
	for _, file := range os.Args[2:] {
		data, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		obj, err := luahealth.DecodeObject(data)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", file, err)
			os.Exit(1)
		}
		r := result{File: file}
		if r.Status, err = luahealth.Evaluate(string(script), obj); err != nil {
			r.Error = err.Error()
		}
		if err := out.Encode(r); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
