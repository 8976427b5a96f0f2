package store

import "fmt"

type expectKind uint8

const (
	expectAny expectKind = iota
	expectStreamExists
	expectNoStream
	expectExact
)

// ExpectedVersion is the condition an append checks against the stream's
// current state. The zero value is [Any].
type ExpectedVersion struct {
	kind expectKind
	n    Version
}

var (
	// Any performs no check: the stream is created or appended to.
	Any = ExpectedVersion{kind: expectAny}
	// StreamExists requires the stream to exist.
	StreamExists = ExpectedVersion{kind: expectStreamExists}
	// NoStream requires the stream not to exist.
	NoStream = ExpectedVersion{kind: expectNoStream}
)

// Exact requires the stream's current version to be n. Exact(0) requires a
// missing stream (a stream with no events).
func Exact(n Version) ExpectedVersion {
	return ExpectedVersion{kind: expectExact, n: n}
}

// IsAny reports whether e performs no check.
func (e ExpectedVersion) IsAny() bool { return e.kind == expectAny }

// Exact returns the version e requires and whether e is an exact check.
func (e ExpectedVersion) Exact() (Version, bool) { return e.n, e.kind == expectExact }

// String renders e for errors and logs.
func (e ExpectedVersion) String() string {
	switch e.kind {
	case expectStreamExists:
		return "stream exists"
	case expectNoStream:
		return "no stream"
	case expectExact:
		return fmt.Sprintf("%d", e.n)
	default:
		return "any"
	}
}

// Allows reports whether a stream in the given state satisfies e: exists
// says whether the stream exists and current is its version (0 when it does
// not). This is the whole expected-version matrix; backends call it or
// encode the same rules in SQL.
func (e ExpectedVersion) Allows(exists bool, current Version) bool {
	switch e.kind {
	case expectStreamExists:
		return exists
	case expectNoStream:
		return !exists
	case expectExact:
		if !exists {
			return e.n == 0
		}
		return e.n == current
	default:
		return true
	}
}
