// Package domain holds the service's types and error kinds. It imports nothing outside
// the standard library, so every other layer can depend on it.
package domain

import (
	"context"
	"errors"
	"fmt"
)

// Kind classifies an error. The transport maps each kind to an HTTP status in one table
// (internal/httpapi/errors.go); the service and store layers only pick a kind.
type Kind string

// The error taxonomy. Anything that is not a *Error is KindInternal.
const (
	KindInvalid      Kind = "invalid"
	KindUnauthorized Kind = "unauthorized"
	KindForbidden    Kind = "forbidden"
	KindNotFound     Kind = "not_found"
	KindConflict     Kind = "conflict"
	KindTooLarge     Kind = "too_large"
	KindRateLimited  Kind = "rate_limited"
	KindUnavailable  Kind = "unavailable"
	KindInternal     Kind = "internal"
)

// Error is an error with a kind, a message safe to show to callers and, for
// KindInvalid, the fields that failed validation.
type Error struct {
	Kind    Kind
	Message string
	Fields  map[string]string
	Err     error // the cause, never shown to callers
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Kind, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Kind, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of the given kind with a formatted message.
func Errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error of the given kind that keeps err as its hidden cause.
func Wrap(kind Kind, err error, message string) *Error {
	return &Error{Kind: kind, Message: message, Err: err}
}

// Invalid returns a KindInvalid error listing the offending fields.
func Invalid(message string, fields map[string]string) *Error {
	return &Error{Kind: KindInvalid, Message: message, Fields: fields}
}

// KindOf reports the kind of err: KindUnavailable when a deadline ran out anywhere in its
// chain (the service or a dependency was too slow: the caller may retry later), else the
// kind of the first *Error in its chain, else KindInternal. It is the one place that rule
// lives; the transports and the tracing follow it.
func KindOf(err error) Kind {
	if errors.Is(err, context.DeadlineExceeded) {
		return KindUnavailable
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// IsKind reports whether err is of the given kind.
func IsKind(err error, kind Kind) bool { return err != nil && KindOf(err) == kind }
