// Command argocd-lua runs the tests of Argo CD resource customizations the way Argo CD's
// own tests do (util/lua/health_test.go and custom_actions_test.go in argoproj/argo-cd):
// every health.lua with the health_test.yaml beside it, and every actions/ folder with
// its action_test.yaml, on gopher-lua with the libraries Argo CD opens.
//
//	argocd-lua [-lua51 PATH] ROOT...
//	argocd-lua -patch ACTION_LUA < object.json
//
// ROOT is a resource_customizations folder (<group>/<kind>/ below it). Each case runs:
//
//   - on gopher-lua as Argo CD runs a script from argocd-cm (useOpenLibs unset): only
//     package, base, table and Argo CD's "safe" os are open, string and math are not;
//   - health and discovery cases also with every library open, as Argo CD's health and
//     discovery tests run them;
//   - with -lua51, also on that Lua 5.1 interpreter (Debian's lua5.1), with the same
//     libraries left visible, the object passed and the result read back as JSON.
//
// The comparisons are stricter than Argo CD's in one place: a discovery test's result must
// list exactly the actions the script offers (Argo CD only checks that each offered action
// is listed). Every file under testdata/ must be used by a test.
//
// Output: one line per case and engine, then "N cases pass" or "N of M cases failed"
// (exit status 1).
//
// With -patch, it runs one action on the object read from stdin (JSON) on gopher-lua and
// prints the JSON merge patch that Argo CD sends for it (the difference between the object
// and the action's result), for tests that apply an action to a real apiserver.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
	"sigs.k8s.io/yaml"
)

// healthTests is health_test.yaml.
type healthTests struct {
	Tests []struct {
		HealthStatus healthStatus `json:"healthStatus"`
		InputPath    string       `json:"inputPath"`
	} `json:"tests"`
}

type healthStatus struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// actionTests is actions/action_test.yaml.
type actionTests struct {
	DiscoveryTests []struct {
		InputPath string           `json:"inputPath"`
		Result    []resourceAction `json:"result"`
	} `json:"discoveryTests"`
	ActionTests []struct {
		Action             string `json:"action"`
		InputPath          string `json:"inputPath"`
		ExpectedOutputPath string `json:"expectedOutputPath"`
	} `json:"actionTests"`
}

// resourceAction is the part of Argo CD's ResourceAction a discovery script decides.
type resourceAction struct {
	Name        string `json:"name"`
	Disabled    bool   `json:"disabled,omitempty"`
	IconClass   string `json:"iconClass,omitempty"`
	DisplayName string `json:"displayName,omitempty"`
}

// engine runs one script on one object and returns what the script returned, as the JSON
// gopher-json makes of it (Argo CD reads every result that way).
type engine struct {
	name string
	run  func(script string, obj map[string]any) ([]byte, error)
}

func main() {
	lua51 := flag.String("lua51", "", "also run every case on this Lua 5.1 interpreter")
	patch := flag.String("patch", "", "print the merge patch of this action.lua for the object on stdin")
	flag.Parse()
	if *patch != "" {
		if err := printPatch(*patch); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: argocd-lua [-lua51 PATH] RESOURCE_CUSTOMIZATIONS_DIR...")
		os.Exit(2)
	}
	restricted := engine{"gopher-lua", func(s string, o map[string]any) ([]byte, error) { return runGopher(s, o, false) }}
	openLibs := engine{"gopher-lua+openlibs", func(s string, o map[string]any) ([]byte, error) { return runGopher(s, o, true) }}
	healthEngines := []engine{restricted, openLibs}
	actionEngines := []engine{restricted}
	if *lua51 != "" {
		e := engine{"lua5.1", func(s string, o map[string]any) ([]byte, error) { return runLua51(*lua51, s, o) }}
		healthEngines = append(healthEngines, e)
		actionEngines = append(actionEngines, e)
	}
	r := &report{}
	for _, root := range flag.Args() {
		if err := runRoot(r, root, healthEngines, actionEngines); err != nil {
			r.fail("%s: %v", root, err)
		}
	}
	if r.failed > 0 {
		fmt.Printf("%d of %d cases failed\n", r.failed, r.total)
		os.Exit(1)
	}
	if r.total == 0 {
		fmt.Println("no case found")
		os.Exit(1)
	}
	fmt.Printf("%d cases pass\n", r.total)
}

type report struct{ total, failed int }

func (r *report) ok(format string, args ...any) {
	r.total++
	fmt.Printf("ok   "+format+"\n", args...)
}

func (r *report) fail(format string, args ...any) {
	r.total++
	r.failed++
	fmt.Printf("FAIL "+format+"\n", args...)
}

// runRoot runs every customization below root: each folder with a health.lua, and each
// actions/ folder with a discovery.lua.
func runRoot(r *report, root string, healthEngines, actionEngines []engine) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		dir := filepath.Dir(path)
		name, _ := filepath.Rel(root, dir)
		used := map[string]bool{}
		switch d.Name() {
		case "health.lua":
			runHealth(r, name, dir, healthEngines, used)
			checkAllUsed(r, name, dir, used)
		case "discovery.lua":
			runActions(r, name, dir, healthEngines, actionEngines, used)
			checkAllUsed(r, name, dir, used)
		}
		return nil
	})
}

func runHealth(r *report, name, dir string, engines []engine, used map[string]bool) {
	var tests healthTests
	if err := readYAML(filepath.Join(dir, "health_test.yaml"), &tests); err != nil {
		r.fail("%s: %v", name, err)
		return
	}
	script, err := os.ReadFile(filepath.Join(dir, "health.lua"))
	if err != nil {
		r.fail("%s: %v", name, err)
		return
	}
	if len(tests.Tests) == 0 {
		r.fail("%s/health_test.yaml: no test", name)
	}
	for _, test := range tests.Tests {
		used[filepath.Clean(test.InputPath)] = true
		obj, err := readObject(filepath.Join(dir, test.InputPath))
		for _, e := range engines {
			label := fmt.Sprintf("%s %s/%s", e.name, name, test.InputPath)
			if err != nil {
				r.fail("%s: %v", label, err)
				continue
			}
			got, err := health(e, string(script), obj)
			switch {
			case err != nil:
				r.fail("%s: %v", label, err)
			case got != test.HealthStatus:
				r.fail("%s: got %+v, want %+v", label, got, test.HealthStatus)
			default:
				r.ok("%s: %s (%s)", label, got.Status, got.Message)
			}
		}
	}
}

// health is Argo CD's ExecuteHealthLua: the script's table read as a HealthStatus, and an
// unknown status code turned into Unknown.
func health(e engine, script string, obj map[string]any) (healthStatus, error) {
	out, err := e.run(script, obj)
	if err != nil {
		return healthStatus{}, err
	}
	var hs healthStatus
	if err := json.Unmarshal(out, &hs); err != nil {
		return healthStatus{}, fmt.Errorf("the script returned %s: %w", out, err)
	}
	switch hs.Status {
	case "Unknown", "Progressing", "Suspended", "Healthy", "Degraded", "Missing":
		return hs, nil
	}
	return healthStatus{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
}

func runActions(r *report, name, dir string, discoveryEngines, actionEngines []engine, used map[string]bool) {
	var tests actionTests
	if err := readYAML(filepath.Join(dir, "action_test.yaml"), &tests); err != nil {
		r.fail("%s: %v", name, err)
		return
	}
	discovery, err := os.ReadFile(filepath.Join(dir, "discovery.lua"))
	if err != nil {
		r.fail("%s: %v", name, err)
		return
	}
	if len(tests.DiscoveryTests) == 0 || len(tests.ActionTests) == 0 {
		r.fail("%s/action_test.yaml: discoveryTests and actionTests must both have tests", name)
	}
	for _, test := range tests.DiscoveryTests {
		used[filepath.Clean(test.InputPath)] = true
		obj, err := readObject(filepath.Join(dir, test.InputPath))
		want := sortedActions(test.Result)
		for _, e := range discoveryEngines {
			label := fmt.Sprintf("%s %s/discovery %s", e.name, name, test.InputPath)
			if err != nil {
				r.fail("%s: %v", label, err)
				continue
			}
			got, err := discover(e, string(discovery), obj)
			switch {
			case err != nil:
				r.fail("%s: %v", label, err)
			case !reflect.DeepEqual(got, want):
				r.fail("%s: offers %+v, want %+v", label, got, want)
			default:
				r.ok("%s: %s", label, actionNames(got))
			}
		}
	}
	for _, test := range tests.ActionTests {
		used[filepath.Clean(test.InputPath)] = true
		used[filepath.Clean(test.ExpectedOutputPath)] = true
		script, err := os.ReadFile(filepath.Join(dir, test.Action, "action.lua"))
		for _, e := range actionEngines {
			label := fmt.Sprintf("%s %s/%s %s", e.name, name, test.Action, test.InputPath)
			if err != nil {
				r.fail("%s: %v", label, err)
				continue
			}
			// Each engine gets its own copy: cleanReturnedObj writes into the result.
			obj, err := readObject(filepath.Join(dir, test.InputPath))
			if err != nil {
				r.fail("%s: %v", label, err)
				continue
			}
			want, err := readObject(filepath.Join(dir, test.ExpectedOutputPath))
			if err != nil {
				r.fail("%s: %v", label, err)
				continue
			}
			got, err := action(e, string(script), obj)
			switch {
			case err != nil:
				r.fail("%s: %v", label, err)
			case !reflect.DeepEqual(normalize(got), normalize(want)):
				r.fail("%s: the result differs from %s:\n%s", label, test.ExpectedOutputPath, diffYAML(want, got))
			default:
				r.ok("%s: gives %s", label, test.ExpectedOutputPath)
			}
		}
	}
}

// discover is Argo CD's ExecuteResourceActionDiscovery: an empty table offers nothing;
// otherwise each key is an action, whose value is {} or its settings.
func discover(e engine, script string, obj map[string]any) ([]resourceAction, error) {
	out, err := e.run(script, obj)
	if err != nil {
		return nil, err
	}
	if string(out) == "[]" {
		return []resourceAction{}, nil
	}
	var offered map[string]any
	if err := json.Unmarshal(out, &offered); err != nil {
		return nil, fmt.Errorf("the script returned %s: %w", out, err)
	}
	actions := []resourceAction{}
	for key, value := range offered {
		a := resourceAction{Name: key}
		if settings, ok := value.(map[string]any); ok {
			raw, _ := json.Marshal(settings)
			if err := json.Unmarshal(raw, &a); err != nil {
				return nil, fmt.Errorf("action %s: %w", key, err)
			}
			a.Name = key
		}
		actions = append(actions, a)
	}
	return sortedActions(actions), nil
}

// action is Argo CD's ExecuteResourceAction for an action that returns the object (a
// patch): the result read back, with cleanReturnedObj's repair of empty maps that Lua
// turned into empty lists.
func action(e engine, script string, obj map[string]any) (map[string]any, error) {
	out, err := e.run(script, obj)
	if err != nil {
		return nil, err
	}
	if len(out) > 0 && out[0] == '[' {
		return nil, fmt.Errorf("the script returned a list (%s); these tests take an object", out)
	}
	var result map[string]any
	if err := json.Unmarshal(out, &result); err != nil {
		return nil, fmt.Errorf("the script returned %s: %w", out, err)
	}
	return cleanReturnedObj(result, obj), nil
}

// cleanReturnedObj puts back an empty map where the script's result holds an empty list
// and the input held a map (Lua cannot tell the two apart), recursively, as Argo CD does.
func cleanReturnedObj(result, input map[string]any) map[string]any {
	for key, before := range input {
		after, ok := result[key]
		if !ok {
			continue
		}
		switch after := after.(type) {
		case map[string]any:
			if before, ok := before.(map[string]any); ok {
				result[key] = cleanReturnedObj(after, before)
			}
		case []any:
			switch before := before.(type) {
			case map[string]any:
				if len(after) == 0 {
					result[key] = before
				}
			case []any:
				result[key] = cleanReturnedList(after, before)
			}
		}
	}
	return result
}

func cleanReturnedList(result, input []any) []any {
	for i := range result {
		if i >= len(input) {
			break
		}
		switch after := result[i].(type) {
		case map[string]any:
			if before, ok := input[i].(map[string]any); ok {
				result[i] = cleanReturnedObj(after, before)
			}
		case []any:
			if before, ok := input[i].([]any); ok {
				result[i] = cleanReturnedList(after, before)
			}
		}
	}
	return result
}

// runGopher is Argo CD's VM.runLua: a fresh state, the libraries Argo CD opens, the object
// as the global obj, a one-second limit; the script's return value as JSON.
func runGopher(script string, obj map[string]any, openLibs bool) ([]byte, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	l.PreloadModule(lua.OsLibName, safeOsLoader)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return nil, err
	}
	returned := l.Get(-1)
	if returned.Type() != lua.LTTable {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", returned.Type())
	}
	return luajson.Encode(returned)
}

// Argo CD's "safe" os library: only time and date. Argo CD's OpenSafeOs registers them
// under the name "table" (lua.TabLibName), so without open libraries the global os is
// absent and only require("os") reaches them; kept so, as scripts meet it there.
var safeOs = map[string]lua.LGFunction{"time": osTime, "date": osDate}

func openSafeOs(l *lua.LState) int {
	l.Push(l.RegisterModule(lua.TabLibName, safeOs))
	return 1
}

func safeOsLoader(l *lua.LState) int {
	l.Push(l.SetFuncs(l.NewTable(), safeOs))
	return 1
}

func osTime(l *lua.LState) int {
	if l.GetTop() == 0 {
		l.Push(lua.LNumber(time.Now().Unix()))
		return 1
	}
	t := l.CheckTable(1)
	field := func(key string, def int) int {
		if n, ok := t.RawGetString(key).(lua.LNumber); ok {
			return int(n)
		}
		return def
	}
	at := time.Date(field("year", -1), time.Month(field("month", -1)), field("day", -1),
		field("hour", 12), field("min", 0), field("sec", 0), 0, time.Local)
	l.Push(lua.LNumber(at.Unix()))
	return 1
}

// osDate knows the strftime flags Argo CD's does (a subset of C's).
func osDate(l *lua.LState) int {
	t := time.Now()
	format := "%c"
	if l.GetTop() >= 1 {
		format = l.CheckString(1)
		if strings.HasPrefix(format, "!") {
			t, format = t.UTC(), strings.TrimLeft(format, "!")
		}
		if l.GetTop() >= 2 {
			t = time.Unix(l.CheckInt64(2), 0)
		}
	}
	layouts := map[byte]string{'a': "Mon", 'A': "Monday", 'b': "Jan", 'B': "January",
		'c': "02 Jan 06 15:04 MST", 'd': "02", 'F': "2006-01-02", 'H': "15", 'I': "03",
		'm': "01", 'M': "04", 'p': "PM", 'S': "05", 'y': "06", 'Y': "2006", 'z': "-0700", 'Z': "MST"}
	var out strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 == len(format) {
			out.WriteByte(format[i])
			continue
		}
		i++
		if layout, ok := layouts[format[i]]; ok {
			out.WriteString(t.Format(layout))
		} else {
			out.WriteByte('%')
			out.WriteByte(format[i])
		}
	}
	l.Push(lua.LString(out.String()))
	return 1
}

// toLua is Argo CD's decodeValue: JSON values as Lua values (numbers as numbers).
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for key, item := range v {
			t.RawSetH(lua.LString(key), toLua(l, item))
		}
		return t
	}
	return lua.LNil
}

// lua51Prelude runs in Lua 5.1 before the script: it keeps what it needs, leaves the
// script the libraries Argo CD opens (package, base, table, and os.time and os.date
// through require("os")), and encodes the returned table to JSON the way gopher-json does.
const lua51Prelude = `
local format, gsub, byte, write, stderr, type, pairs, next, tostring, floor =
  string.format, string.gsub, string.byte, io.write, io.stderr, type, pairs, next, tostring, math.floor
local safe_os = { time = os.time, date = os.date }
string, math, io, os, debug, coroutine = nil, nil, nil, nil, nil, nil
package.loaded.string, package.loaded.math, package.loaded.io, package.loaded.debug = nil, nil, nil, nil
package.loaded.coroutine, package.loaded.os = nil, safe_os

local encode
local function encode_string(s)
  return '"' .. gsub(s, '[%c"\\]', function(c) return format("\\u%04x", byte(c)) end) .. '"'
end
function encode(v, seen)
  local t = type(v)
  if t == "nil" then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then
    if v == floor(v) and v > -1e15 and v < 1e15 then return format("%d", v) end
    return format("%.17g", v)
  end
  if t == "string" then return encode_string(v) end
  if t ~= "table" then error("cannot encode " .. t .. " to JSON") end
  if seen[v] then error("cannot encode recursively nested tables to JSON") end
  seen[v] = true
  local k = next(v)
  if k == nil then return "[]" end
  local parts = {}
  if type(k) == "number" then
    local n = 0
    for key in pairs(v) do
      if type(key) ~= "number" then error("cannot encode mixed or invalid key types") end
      n = n + 1
    end
    for i = 1, n do
      if v[i] == nil then error("cannot encode sparse array") end
      parts[i] = encode(v[i], seen)
    end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  for key, value in pairs(v) do
    if type(key) ~= "string" then error("cannot encode mixed or invalid key types") end
    parts[#parts + 1] = encode_string(key) .. ":" .. encode(value, seen)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function run(source, object)
  obj = object
  local chunk, err = loadstring(source, "=script")
  if chunk == nil then error(err, 0) end
  local result = chunk()
  if type(result) ~= "table" then
    error("expect table output from Lua script, not " .. type(result), 0)
  end
  write(encode(result, {}))
end
`

// runLua51 runs the script on a Lua 5.1 interpreter, with the object as a Lua literal.
func runLua51(interpreter, script string, obj map[string]any) ([]byte, error) {
	var program bytes.Buffer
	program.WriteString(lua51Prelude)
	program.WriteString("run(")
	writeLuaString(&program, script)
	program.WriteString(", ")
	writeLuaValue(&program, obj)
	program.WriteString(")\n")
	cmd := exec.Command(interpreter, "-")
	cmd.Stdin = &program
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %v: %s", interpreter, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func writeLuaValue(b *bytes.Buffer, value any) {
	switch v := value.(type) {
	case bool:
		fmt.Fprintf(b, "%t", v)
	case float64:
		fmt.Fprintf(b, "%.17g", v)
	case string:
		writeLuaString(b, v)
	case []any:
		b.WriteString("{")
		for _, item := range v {
			writeLuaValue(b, item)
			b.WriteString(",")
		}
		b.WriteString("}")
	case map[string]any:
		keys := make([]string, 0, len(v))
		for key := range v {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		b.WriteString("{")
		for _, key := range keys {
			b.WriteString("[")
			writeLuaString(b, key)
			b.WriteString("]=")
			writeLuaValue(b, v[key])
			b.WriteString(",")
		}
		b.WriteString("}")
	default:
		b.WriteString("nil")
	}
}

// writeLuaString writes s as a Lua 5.1 string literal: printable ASCII as it is, every
// other byte as a decimal escape (Lua 5.1 knows no \x or \u).
func writeLuaString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(b, "\\%03d", c)
		}
	}
	b.WriteByte('"')
}

func readYAML(path string, into any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func readObject(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	obj := map[string]any{}
	if err := yaml.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return obj, nil
}

// normalize turns a value into what a JSON round trip makes of it (numbers as float64).
func normalize(value any) any {
	data, _ := json.Marshal(value)
	var out any
	_ = json.Unmarshal(data, &out)
	return out
}

func diffYAML(want, got map[string]any) string {
	w, _ := yaml.Marshal(want)
	g, _ := yaml.Marshal(got)
	return "--- want\n" + string(w) + "--- got\n" + string(g)
}

func sortedActions(actions []resourceAction) []resourceAction {
	out := append([]resourceAction{}, actions...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func actionNames(actions []resourceAction) string {
	if len(actions) == 0 {
		return "no action"
	}
	names := make([]string, len(actions))
	for i, a := range actions {
		names[i] = a.Name
		if a.Disabled {
			names[i] += " (disabled)"
		}
	}
	return strings.Join(names, ", ")
}

func printPatch(actionPath string) error {
	script, err := os.ReadFile(actionPath)
	if err != nil {
		return err
	}
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	var obj map[string]any
	if err := json.Unmarshal(input, &obj); err != nil {
		return fmt.Errorf("stdin: %w", err)
	}
	var original map[string]any
	_ = json.Unmarshal(input, &original)
	result, err := action(engine{"gopher-lua", func(s string, o map[string]any) ([]byte, error) {
		return runGopher(s, o, false)
	}}, string(script), obj)
	if err != nil {
		return err
	}
	out, err := json.Marshal(mergePatch(original, result))
	if err != nil {
		return err
	}
	fmt.Println(string(out))
	return nil
}

// mergePatch is the RFC 7386 merge patch that turns before into after.
func mergePatch(before, after map[string]any) map[string]any {
	patch := map[string]any{}
	for key := range before {
		if _, ok := after[key]; !ok {
			patch[key] = nil
		}
	}
	for key, value := range after {
		old, ok := before[key]
		oldMap, oldIsMap := old.(map[string]any)
		newMap, newIsMap := value.(map[string]any)
		switch {
		case ok && oldIsMap && newIsMap:
			if sub := mergePatch(oldMap, newMap); len(sub) > 0 {
				patch[key] = sub
			}
		case !ok || !reflect.DeepEqual(normalize(old), normalize(value)):
			patch[key] = value
		}
	}
	return patch
}

// checkAllUsed fails when a file under dir/testdata is used by no test: every committed
// object is there to be checked.
func checkAllUsed(r *report, name, dir string, used map[string]bool) {
	entries, err := os.ReadDir(filepath.Join(dir, "testdata"))
	if err != nil {
		return
	}
	for _, entry := range entries {
		path := filepath.Join("testdata", entry.Name())
		if !entry.IsDir() && !used[path] {
			r.fail("%s/%s: used by no test", name, path)
		}
	}
}
