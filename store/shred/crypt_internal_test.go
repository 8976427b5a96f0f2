package shred

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

type person struct {
	ID   string `json:"id" troupe:"subject"`
	Name string `json:"name" troupe:"personal"`
}

// TestSubjectsInIsAHint: the pre-pass finds subjects however the JSON is
// spaced or escaped, and a subject it misses is still looked up when its
// value is met.
func TestSubjectsInIsAHint(t *testing.T) {
	ctx := context.Background()
	codec := store.NewJSONCodec().MustRegister("Person", person{})
	keys := NewMemoryKeyStore()
	sh, err := New(keys, &Config{Codec: codec, Events: []any{person{}}})
	require.NoError(t, err)
	subject := "odd \"s\": } subject"
	k, err := sh.obtain(ctx, map[Subject]struct{}{{Partition: store.DefaultPartition, ID: subject}: {}})
	require.NoError(t, err)
	c := k[Subject{Partition: store.DefaultPartition, ID: subject}]
	v, err := seal(c.aead, store.DefaultPartition, subject, 1, json.RawMessage(`"Ada"`))
	require.NoError(t, err)
	var indented bytes.Buffer
	require.NoError(t, json.Indent(&indented, []byte(`{"id":"x","name":`+string(v)+`}`), "", "  "))
	require.Equal(t, []string{subject}, subjectsIn(indented.Bytes()))

	// "s" spelt with an escape: the pre-pass misses it, the walk does not.
	escaped := bytes.Replace(indented.Bytes(), []byte(`"s"`), []byte(`"\u0073"`), 1)
	require.Empty(t, subjectsIn(escaped))
	sh2, err := New(keys, &Config{Codec: codec, Events: []any{person{}}})
	require.NoError(t, err)
	for _, data := range [][]byte{indented.Bytes(), escaped} {
		out, err := sh2.Decrypt(ctx, []store.Event{{Type: "Person", Data: data, StreamID: "p", Partition: store.DefaultPartition}})
		require.NoError(t, err)
		require.JSONEq(t, `{"id":"x","name":"Ada"}`, string(out[0].Data))
	}
}
