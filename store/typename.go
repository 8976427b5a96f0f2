package store

import (
	"errors"
	"fmt"
	"reflect"
)

// TypeNamer is implemented by codecs that can name the stored type of a Go
// type without encoding a value of it. TypeNameOf uses it when the codec
// has it.
type TypeNamer interface {
	// TypeName returns the stored type name of sample's Go type. An
	// unregistered type returns an error matching ErrUnknownEventType.
	TypeName(sample any) (string, error)
}

// TypeNameOf returns the stored type name codec writes for events of Go
// type E: through TypeNamer when codec implements it, else by encoding
// E's zero value. An unregistered E (or an interface or pointer type that
// was not registered as such) returns an error matching
// ErrUnknownEventType that names the Go type.
func TypeNameOf[E any](codec Codec) (string, error) {
	t := reflect.TypeFor[E]()
	if codec == nil {
		return "", InvalidArgument("no codec to name Go type %v", t)
	}
	var zero E
	var name string
	var err error
	if n, ok := codec.(TypeNamer); ok {
		name, err = n.TypeName(zero)
	} else {
		name, _, err = codec.Encode(zero)
	}
	switch {
	case errors.Is(err, ErrUnknownEventType):
		return "", fmt.Errorf("%w: Go type %v is not registered in the codec", ErrUnknownEventType, t)
	case err != nil:
		return "", fmt.Errorf("name Go type %v with the codec: %w", t, err)
	case name == "":
		return "", fmt.Errorf("%w: the codec gives Go type %v an empty name", ErrUnknownEventType, t)
	}
	return name, nil
}
