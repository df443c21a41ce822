package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"reflect"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// subsystemKey names the library or part of the cluster a log line comes from: raft, raft.transport,
// memberlist, tls. It is not "component": the agent hands the cluster a logger that already carries
// component=cluster, and a second "component" would put the key twice in one JSON object.
const subsystemKey = "subsystem"

// hclogAdapter routes raft's hclog output into slog, so one handler (and its level) governs all of vipd's logs.
//
// Raft's own key/value pairs go into one group named after the root logger ("raft": {"term": 2, …}): raft
// uses keys such as "node" that the cluster's logger carries already (node=lb1), and a group keeps them apart
// whatever the parent logger holds. Values are rendered as hclog would print them, not dumped: hclog.Fmt is
// formatted, a Stringer (raft's *Raft) is its String(), a struct is %+v.
type hclogAdapter struct {
	l     *slog.Logger
	name  string // hclog's name, dotted: raft, raft.transport
	group string // the group raft's key/values go in: the first part of name
	args  []any  // from With, as given
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func newHclog(l *slog.Logger, name string) *hclogAdapter {
	return &hclogAdapter{l: l, name: name, group: rootName(name)}
}

// rootName is the first dotted part of an hclog name, or "raft" for none: the group of the key/values.
func rootName(name string) string {
	root, _, _ := strings.Cut(name, ".")
	if root == "" {
		return "raft"
	}
	return root
}

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	lv := slogLevel(level)
	ctx := context.Background()
	if !h.l.Enabled(ctx, lv) {
		return
	}
	attrs := make([]slog.Attr, 0, 2)
	if h.name != "" {
		attrs = append(attrs, slog.String(subsystemKey, h.name))
	}
	if kv := hclogAttrs(h.args, args); len(kv) > 0 {
		attrs = append(attrs, slog.Attr{Key: h.group, Value: slog.GroupValue(kv...)})
	}
	h.l.LogAttrs(ctx, lv, msg, attrs...)
}

// hclogAttrs turns hclog's alternating keys and values (With's, then the call's) into attributes: one per
// key, the last value winning as in hclog's JSON output, in the order keys first appeared. A value without a
// key is kept under hclog's own name for it.
func hclogAttrs(with, args []any) []slog.Attr {
	n := len(with) + len(args)
	if n == 0 {
		return nil
	}
	all := make([]any, 0, n+1)
	all = append(append(all, with...), args...)
	if len(all)%2 == 1 {
		all = append(all[:len(all)-1], hclog.MissingKey, all[len(all)-1])
	}
	attrs := make([]slog.Attr, 0, len(all)/2)
	at := make(map[string]int, len(all)/2)
	for i := 0; i < len(all); i += 2 {
		key, ok := all[i].(string)
		if !ok {
			key = fmt.Sprint(all[i])
		}
		a := slog.Attr{Key: key, Value: hclogValue(all[i+1])}
		if j, seen := at[key]; seen {
			attrs[j] = a
			continue
		}
		at[key] = len(attrs)
		attrs = append(attrs, a)
	}
	return attrs
}

// hclogValue renders one of raft's values as hclog's own output would, for any slog handler: slog's JSON
// handler would otherwise marshal hclog.Fmt("%+v", x) as the array ["%+v", x] and a *raft.Raft as its
// exported fields ({"RestoreCommittedLogs":false}) instead of its String().
func hclogValue(v any) slog.Value {
	switch x := v.(type) {
	case hclog.Format:
		if len(x) == 0 {
			return slog.StringValue("")
		}
		if format, ok := x[0].(string); ok {
			return slog.StringValue(fmt.Sprintf(format, x[1:]...))
		}
		return slog.StringValue(fmt.Sprint(x...))
	case hclog.Hex:
		return slog.StringValue("0x" + strconv.FormatUint(uint64(x), 16))
	case hclog.Octal:
		return slog.StringValue("0" + strconv.FormatUint(uint64(x), 8))
	case hclog.Binary:
		return slog.StringValue("0b" + strconv.FormatUint(uint64(x), 2))
	case hclog.Quote:
		return slog.StringValue(string(x))
	case error, slog.LogValuer:
		return slog.AnyValue(x) // handlers print an error's Error(); a LogValuer resolves itself
	}
	val := slog.AnyValue(v)
	if val.Kind() != slog.KindAny {
		return val // strings, numbers, durations, times: slog's own rendering
	}
	if s, ok := v.(fmt.Stringer); ok {
		return slog.StringValue(fmt.Sprint(s)) // fmt, not s.String(): it survives a nil receiver
	}
	if holdsStruct(reflect.TypeOf(v)) {
		return slog.StringValue(fmt.Sprintf("%+v", v))
	}
	return val // slices and maps of plain values: a JSON array or object is readable
}

// holdsStruct reports whether t is a struct, or a pointer, slice, array or map of them.
func holdsStruct(t reflect.Type) bool {
	for t != nil {
		switch t.Kind() {
		case reflect.Struct:
			return true
		case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
			t = t.Elem()
		default:
			return false
		}
	}
	return false
}

func (h *hclogAdapter) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogAdapter) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogAdapter) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hclogAdapter) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogAdapter) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hclogAdapter) enabled(l hclog.Level) bool {
	return h.l.Enabled(context.Background(), slogLevel(l))
}
func (h *hclogAdapter) IsTrace() bool { return h.enabled(hclog.Trace) }
func (h *hclogAdapter) IsDebug() bool { return h.enabled(hclog.Debug) }
func (h *hclogAdapter) IsInfo() bool  { return h.enabled(hclog.Info) }
func (h *hclogAdapter) IsWarn() bool  { return h.enabled(hclog.Warn) }
func (h *hclogAdapter) IsError() bool { return h.enabled(hclog.Error) }

func (h *hclogAdapter) ImpliedArgs() []any { return h.args }
func (h *hclogAdapter) With(args ...any) hclog.Logger {
	return &hclogAdapter{l: h.l, name: h.name, group: h.group, args: append(append([]any(nil), h.args...), args...)}
}
func (h *hclogAdapter) Name() string { return h.name }
func (h *hclogAdapter) Named(name string) hclog.Logger {
	n := name
	if h.name != "" {
		n = h.name + "." + name
	}
	return &hclogAdapter{l: h.l, name: n, group: h.group, args: h.args}
}
func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	return &hclogAdapter{l: h.l, name: name, group: rootName(name), args: h.args}
}

// SetLevel is a no-op: the slog handler decides levels.
func (h *hclogAdapter) SetLevel(hclog.Level) {}

// GetLevel reports the most verbose level the slog handler accepts.
func (h *hclogAdapter) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn} {
		if h.enabled(l) {
			return l
		}
	}
	return hclog.Error
}
func (h *hclogAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(nil), "", 0)
}
func (h *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &stdLogWriter{l: h.l, subsystem: h.name}
}

// stdLogWriter turns log.Logger lines of the form "[LEVEL] component: message" (memberlist's format) into
// slog records at the matching level. The lines arrive formatted: log.Printf has filled their verbs.
type stdLogWriter struct {
	l         *slog.Logger
	subsystem string
}

// newStdLogger returns the *log.Logger memberlist needs, writing into l.
func newStdLogger(l *slog.Logger, subsystem string) *log.Logger {
	return log.New(&stdLogWriter{l: l, subsystem: subsystem}, "", 0)
}

func (w *stdLogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		lv, msg := parseStdLine(string(line))
		w.l.LogAttrs(context.Background(), lv, msg, slog.String(subsystemKey, w.subsystem))
	}
	return len(p), nil
}

// parseStdLine splits "[WARN] memberlist: msg" into (slog.LevelWarn, "msg").
func parseStdLine(s string) (slog.Level, string) {
	lv := slog.LevelInfo
	if strings.HasPrefix(s, "[") {
		if end := strings.IndexByte(s, ']'); end > 0 {
			switch strings.ToUpper(s[1:end]) {
			case "TRACE":
				lv = slog.LevelDebug - 4
			case "DEBUG":
				lv = slog.LevelDebug
			case "WARN", "WARNING":
				lv = slog.LevelWarn
			case "ERR", "ERROR":
				lv = slog.LevelError
			}
			s = strings.TrimSpace(s[end+1:])
		}
	}
	if i := strings.Index(s, ": "); i > 0 && !strings.ContainsAny(s[:i], " ") {
		s = s[i+2:] // drop the "memberlist:" prefix; the subsystem attribute names it
	}
	return lv, s
}
