// Package luahealth evaluates an Argo CD resource health check written in Lua the way Argo CD (3.5,
// util/lua) does for a custom check from argocd-cm: gopher-lua with the standard libraries skipped
// except package, base and table, a one-second deadline, the live object in the global `obj`, and
// the returned table read as {status, message}.
package luahealth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// Status is what Argo CD shows for a resource.
type Status struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// The health codes Argo CD accepts; anything else becomes Unknown, as in Argo CD.
var validCodes = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

// InvalidStatusMessage is Argo CD's message for a script that returns a status it does not know.
const InvalidStatusMessage = "Lua returned an invalid health status"

// DecodeObject reads a Kubernetes object from JSON as apimachinery's unstructured decoder does:
// integers become int64, other numbers float64.
func DecodeObject(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		return nil, err
	}
	out, ok := normalizeNumbers(raw).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not a JSON object")
	}
	return out, nil
}

func normalizeNumbers(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	case []any:
		for i := range t {
			t[i] = normalizeNumbers(t[i])
		}
		return t
	case map[string]any:
		for k := range t {
			t[k] = normalizeNumbers(t[k])
		}
		return t
	}
	return v
}

// Evaluate runs script against obj and returns the health it reports.
func Evaluate(script string, obj map[string]any) (Status, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	// Argo CD opens only these for custom checks (and a reduced os library this check does not use);
	// string, math and io are absent unless useOpenLibs is set for the kind, so the checks must not
	// need them.
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return Status{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	// Argo CD sets the parameters of a resource action for every script; a health check gets none.
	l.SetGlobal("actionParams", l.CreateTable(0, 0))
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return Status{}, err
	}
	ret := l.Get(-1)
	table, ok := ret.(*lua.LTable)
	if !ok {
		return Status{}, fmt.Errorf("expect table output from Lua script, not %s", ret.Type())
	}
	status, err := field(table, "status")
	if err != nil {
		return Status{}, err
	}
	message, err := field(table, "message")
	if err != nil {
		return Status{}, err
	}
	if !validCodes[status] {
		return Status{Status: "Unknown", Message: InvalidStatusMessage}, nil
	}
	return Status{Status: status, Message: message}, nil
}

// field reads a string field of the returned table; Argo CD decodes the table through JSON into
// string fields, so a non-string value is an error there too.
func field(t *lua.LTable, name string) (string, error) {
	switch v := t.RawGetString(name).(type) {
	case *lua.LNilType:
		return "", nil
	case lua.LString:
		return string(v), nil
	default:
		return "", fmt.Errorf("health %s is a Lua %s, not a string", name, v.Type())
	}
}

// toLua converts a decoded object into Lua values as Argo CD's decodeValue does: numbers of every
// Go type become Lua numbers, arrays and objects become tables, and JSON null becomes nil.
func toLua(l *lua.LState, v any) lua.LValue {
	switch t := v.(type) {
	case bool:
		return lua.LBool(t)
	case string:
		return lua.LString(t)
	case int64:
		return lua.LNumber(t)
	case float64:
		return lua.LNumber(t)
	case []any:
		arr := l.CreateTable(len(t), 0)
		for _, item := range t {
			arr.Append(toLua(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(t))
		for k, item := range t {
			tbl.RawSetH(lua.LString(k), toLua(l, item))
		}
		return tbl
	}
	return lua.LNil
}
