package store

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestVersionConflictError(t *testing.T) {
	t.Parallel()
	var err error = fmt.Errorf("append: %w", &VersionConflictError{
		Stream: "cart-1", Partition: "t1", Expected: Exact(2), Actual: 5, ActualExists: true})
	if !errors.Is(err, ErrVersionConflict) {
		t.Fatal("errors.Is(err, ErrVersionConflict) = false")
	}
	if errors.Is(err, ErrStreamNotFound) {
		t.Error("a conflict must not match ErrStreamNotFound")
	}
	var vc *VersionConflictError
	if !errors.As(err, &vc) || vc.Actual != 5 {
		t.Fatalf("errors.As failed or lost detail: %+v", vc)
	}
	for _, want := range []string{`"cart-1"`, `"t1"`, "expected 2", "current 5"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not contain %q", err, want)
		}
	}
	missing := &VersionConflictError{Stream: "s", Partition: "p", Expected: StreamExists}
	if !strings.Contains(missing.Error(), "expected stream exists, current no stream") {
		t.Errorf("message for a missing stream: %q", missing)
	}
}

func TestUnknownEventTypeError(t *testing.T) {
	t.Parallel()
	var err error = &UnknownEventTypeError{Type: "Gone", Stream: "s", Partition: "p", Position: 4}
	if !errors.Is(err, ErrUnknownEventType) {
		t.Fatal("errors.Is(err, ErrUnknownEventType) = false")
	}
	for _, want := range []string{`"Gone"`, "position 4", `"s"`, `"p"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not contain %q", err, want)
		}
	}
}

func TestInvalidArgument(t *testing.T) {
	t.Parallel()
	err := InvalidArgument("stream %q is %s", "x", "bad")
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatal("errors.Is(err, ErrInvalidArgument) = false")
	}
	if got, want := err.Error(), `invalid argument: stream "x" is bad`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
