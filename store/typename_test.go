package store_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/troupehq/troupe/store"
)

type named struct{ A int }
type unnamed struct{}

// namer is a codec that names types without encoding them, and refuses
// to encode anything.
type namer struct{}

func (namer) Encode(any) (string, json.RawMessage, error) {
	return "", nil, errors.New("encode called")
}
func (namer) Decode(string, json.RawMessage) (any, error) { return nil, errors.New("decode called") }
func (namer) TypeName(sample any) (string, error) {
	if _, ok := sample.(named); ok {
		return "Named", nil
	}
	return "", store.ErrUnknownEventType
}

func TestTypeNameOf(t *testing.T) {
	c := store.NewJSONCodec().MustRegister("Named", named{})
	if got, err := store.TypeNameOf[named](c); err != nil || got != "Named" {
		t.Fatalf("TypeNameOf[named](JSONCodec) = %q, %v; want Named", got, err)
	}
	_, err := store.TypeNameOf[unnamed](c)
	if !errors.Is(err, store.ErrUnknownEventType) || err.Error() != "unknown event type: Go type store_test.unnamed is not registered in the codec" {
		t.Fatalf("TypeNameOf[unnamed] error = %v", err)
	}
	if _, err := store.TypeNameOf[*named](c); !errors.Is(err, store.ErrUnknownEventType) {
		t.Fatalf("TypeNameOf[*named] error = %v; a pointer type is not the registered struct", err)
	}
	if got, err := store.TypeNameOf[named](namer{}); err != nil || got != "Named" {
		t.Fatalf("TypeNameOf[named](namer) = %q, %v; want Named from TypeName, not Encode", got, err)
	}
	if _, err := store.TypeNameOf[unnamed](namer{}); !errors.Is(err, store.ErrUnknownEventType) {
		t.Fatalf("TypeNameOf[unnamed](namer) error = %v", err)
	}
	if _, err := store.TypeNameOf[named](nil); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("TypeNameOf with a nil codec: %v", err)
	}
}

// refusesZero is an event whose zero value does not encode.
type refusesZero struct{ N int }

func (r refusesZero) MarshalJSON() ([]byte, error) {
	if r.N == 0 {
		return nil, errors.New("zero N")
	}
	return json.Marshal(struct{ N int }{r.N})
}

func TestJSONCodecNamesTypesWithoutEncoding(t *testing.T) {
	c := store.NewJSONCodec().MustRegister("RefusesZero", refusesZero{})
	if _, _, err := c.Encode(refusesZero{}); err == nil {
		t.Fatal("the zero value encodes; the test needs one that does not")
	}
	if got, err := store.TypeNameOf[refusesZero](c); err != nil || got != "RefusesZero" {
		t.Fatalf("TypeNameOf[refusesZero] = %q, %v; want RefusesZero from the codec's type map", got, err)
	}
	if _, err := c.TypeName(unnamed{}); !errors.Is(err, store.ErrUnknownEventType) {
		t.Fatalf("TypeName(unnamed) error = %v", err)
	}
}
