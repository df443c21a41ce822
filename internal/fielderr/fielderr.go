// Package fielderr is the one shape of a configuration error in vipd: the component that owns a setting
// validates it and names the field of its own Config; the agent, which knows how an operator spells that
// field (a flag, a YAML key, a frontend's entry), renders the name once. So a message names the flag wherever
// the check lives, and `vipd validate`, start-up and reload all run the same checks.
package fielderr

import (
	"errors"
	"fmt"
	"regexp"
)

// Error is one invalid setting.
//
// Msg says what is wrong and how to fix it. It may name other fields of the same Config as {Field}, for
// relations ("must not exceed {HeartbeatTimeout}"); Error renders them as the bare field name, Render as the
// caller spells them.
type Error struct {
	// Kind is the owning component's sentinel (cluster.ErrInvalidConfig, …), so errors.Is still works.
	Kind error
	// Field is the name of the invalid field in the component's Config, optionally with an index or a
	// path ("Backends[2]", "Frontends[0].Listen").
	Field string
	// Msg is the problem and the fix, without the field's own name.
	Msg string
}

// New returns an *Error for field of a component whose sentinel is kind.
func New(kind error, field, format string, args ...any) *Error {
	return &Error{Kind: kind, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Error renders the message with the component's own field names.
func (e *Error) Error() string {
	return e.Render(func(f string) string { return f })
}

// Unwrap returns Kind.
func (e *Error) Unwrap() error { return e.Kind }

var ref = regexp.MustCompile(`\{([A-Za-z0-9_.\[\]]+)\}`)

// Render returns "NAME: MSG" with name applied to the field and to every {Field} reference in the message.
func (e *Error) Render(name func(field string) string) string {
	msg := ref.ReplaceAllStringFunc(e.Msg, func(m string) string { return name(m[1 : len(m)-1]) })
	return name(e.Field) + ": " + msg
}

// As returns the *Error in err's chain, if any.
func As(err error) (*Error, bool) {
	var fe *Error
	ok := errors.As(err, &fe)
	return fe, ok
}

// Prefix returns a copy of err (if it is or wraps an *Error) whose field and references are qualified by
// prefix, e.g. "Frontends[1]." — for a component validated as part of a list. Other errors are returned as
// they are.
func Prefix(err error, prefix string) error {
	fe, ok := As(err)
	if !ok {
		return err
	}
	msg := ref.ReplaceAllString(fe.Msg, "{"+prefix+"$1}")
	return &Error{Kind: fe.Kind, Field: prefix + fe.Field, Msg: msg}
}
