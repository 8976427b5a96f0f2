package cli

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

// cartSchema: ItemAdded went {"n":"2"} (v1) -> {"n":2} (v2) -> {"qty":2}
// (v3); CartOpened was CartStarted; Debug is dropped.
func cartSchema() *store.JSONCodec {
	c := store.NewJSONCodec()
	c.MustRegisterUpcaster("ItemAdded", 1, func(data json.RawMessage) (json.RawMessage, error) {
		var v1 struct{ SKU, N string }
		if err := json.Unmarshal(data, &v1); err != nil {
			return nil, err
		}
		n, err := strconv.Atoi(v1.N)
		return json.RawMessage(fmt.Sprintf(`{"sku":%q,"n":%d}`, v1.SKU, n)), err
	}).MustRegisterUpcaster("ItemAdded", 2, func(data json.RawMessage) (json.RawMessage, error) {
		var v2 struct {
			SKU string
			N   int
		}
		err := json.Unmarshal(data, &v2)
		return json.RawMessage(fmt.Sprintf(`{"sku":%q,"qty":%d}`, v2.SKU, v2.N)), err
	}).MustRegisterRename("CartStarted", "CartOpened").MustRegisterDrop("Debug")
	return c
}

// Must show: `streams read` of a binary built with cli.Config.Upcaster
// prints a stream written at v1 as v3; --raw prints it as stored; an event
// of a newer version is an error naming it.
func TestStreamsReadUpcasts(t *testing.T) {
	t.Parallel()
	url, pool := migratedDB(t)
	es := newStore(t, pool)
	v1 := func(typ, data string) store.EventData {
		return store.EventData{Type: typ, SchemaVersion: "1", Data: json.RawMessage(data)}
	}
	_, err := es.AppendToStream(testCtx(t), "c1", []store.EventData{
		v1("CartStarted", `{"cart":"c1"}`), v1("Debug", `{}`), v1("ItemAdded", `{"sku":"a","n":"2"}`),
	}, store.AppendOptions{})
	require.NoError(t, err)
	inv := invocation{upcaster: cartSchema()}
	read := func(inv invocation, args ...string) []eventJSON {
		t.Helper()
		r := ok(t, inv, append([]string{"--database-url", url, "streams", "read", "c1"}, args...)...)
		var out []eventJSON
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			var e eventJSON
			require.NoError(t, json.Unmarshal([]byte(line), &e), line)
			out = append(out, e)
		}
		return out
	}
	got := read(inv)
	require.Len(t, got, 2)
	require.Equal(t, "CartOpened", got[0].Type)
	require.Equal(t, "1", got[0].SchemaVersion)
	require.Equal(t, "ItemAdded", got[1].Type)
	require.Equal(t, "3", got[1].SchemaVersion)
	require.Equal(t, int64(3), got[1].StreamPosition)
	require.JSONEq(t, `{"sku":"a","qty":2}`, string(got[1].Data))

	stored := read(inv, "--raw")
	require.Len(t, stored, 3)
	require.Equal(t, []string{"CartStarted", "Debug", "ItemAdded"}, []string{stored[0].Type, stored[1].Type, stored[2].Type})
	require.JSONEq(t, `{"sku":"a","n":"2"}`, string(stored[2].Data))
	require.Len(t, read(invocation{}), 3, "a binary without upcasters prints events as stored")

	newer := v1("ItemAdded", `{"sku":"b","qty":1,"unit":"kg"}`)
	newer.SchemaVersion = "4"
	_, err = es.AppendToStream(testCtx(t), "c1", []store.EventData{newer}, store.AppendOptions{})
	require.NoError(t, err)
	r := troupe(t, inv, "--database-url", url, "streams", "read", "c1")
	require.Equal(t, ExitError, r.code)
	for _, want := range []string{`"c1"`, "position 4", "ItemAdded", `version "4"`, "newer than 3"} {
		require.Contains(t, r.stderr, want)
	}
}
