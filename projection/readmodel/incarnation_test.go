package readmodel_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/projection/internal/projtest"
	"github.com/troupehq/troupe/projection/readmodel"
	"github.com/troupehq/troupe/store"
)

// recreateEnv is a cart read model of one storage over a fresh database.
type recreateEnv struct {
	t       *testing.T
	es      store.EventStore
	storage readmodel.Storage
	apply   func(evs ...store.Event)
	read    func(cart string) projtest.CartRow
	log     func() []store.Event
}

func newRecreateEnv(t *testing.T, storage readmodel.Storage) recreateEnv {
	pool, es := projtest.NewDB(t)
	ctx := projtest.Ctx(t)
	projtest.CreateCartTable(t, pool, "carts", storage)
	sp := projtest.CartProjection(t, "carts", storage, nil)
	return recreateEnv{
		t: t, es: es, storage: storage,
		apply: func(evs ...store.Event) {
			t.Helper()
			tx, err := pool.Begin(ctx)
			require.NoError(t, err)
			require.NoError(t, sp.HandleBatch(ctx, tx, evs))
			require.NoError(t, tx.Commit(ctx))
			sp.FinishBatch(tx, true)
		},
		read: func(cart string) projtest.CartRow {
			return projtest.ReadCarts(t, pool, "carts", storage)["tenant-a/"+cart]
		},
		log: func() []store.Event { return projtest.ReadAllEvents(t, pool, es, "tenant-a") },
	}
}

// recreate archives cart and starts it again with an open and one item.
func (env recreateEnv) recreate(cart string) {
	env.t.Helper()
	require.NoError(env.t, env.es.ArchiveStream(projtest.Ctx(env.t), store.StreamID(cart), store.ArchiveOptions{Partition: "tenant-a"}))
	projtest.AppendCart(env.t, env.es, "tenant-a", cart, projtest.CartEvent(projtest.TypeOpened, cart, "", 0),
		projtest.CartEvent(projtest.TypeAdded, cart, "new", 1), projtest.CartEvent(projtest.TypeAdded, cart, "new", 1))
}

func oldCart(cart string) []store.EventData {
	return []store.EventData{projtest.CartEvent(projtest.TypeOpened, cart, "", 0), projtest.CartEvent(projtest.TypeAdded, cart, "old", 5),
		projtest.CartEvent(projtest.TypeAdded, cart, "old", 2), projtest.CartEvent(projtest.TypeRemoved, cart, "old", 1)}
}

// newCart is the state of a cart recreated by recreate.
var newCart = projtest.CartState{Open: true, Items: map[string]int{"new": 2}, Applied: 3}

// A snapshot row whose stream was archived and started again restarts from
// the initial state instead of skipping positions 1..N of the new stream as
// applied, in both storage variants, also when the batch holds the new
// stream's events out of stream order (the missing ones are read back from
// the new stream, not the archived one) or together with the old stream's.
func TestReadModelRecreatedStream(t *testing.T) {
	t.Parallel()
	for _, storage := range projtest.Storages {
		t.Run(storage.String(), func(t *testing.T) {
			t.Parallel()
			env := newRecreateEnv(t, storage)
			for _, cart := range []string{"c1", "c2", "c3"} {
				projtest.AppendCart(t, env.es, "tenant-a", cart, oldCart(cart)...)
			}
			before := env.log()
			env.apply(before...)
			require.EqualValues(t, 4, env.read("c1").Position)

			// c1: the new stream's events in order, in a batch of their own.
			env.recreate("c1")
			// c2: recreated; the batch holds its third event first and
			// misses the second.
			env.recreate("c2")
			after := env.log()[len(before)-8:]
			var c1, c2 []store.Event
			for _, e := range after {
				switch e.StreamID {
				case "c1":
					c1 = append(c1, e)
				case "c2":
					c2 = append(c2, e)
				}
			}
			require.Len(t, c1, 3)
			require.Len(t, c2, 3)
			env.apply(c1...)
			env.apply(c2[2], c2[0])
			for _, cart := range []string{"c1", "c2"} {
				got := env.read(cart)
				require.Equal(t, newCart, got.State, "cart %s is the new stream's fold", cart)
				require.EqualValues(t, 3, got.Position)
				require.Equal(t, 2, got.ItemCount)
			}
			// Replayed: nothing changes.
			env.apply(c1...)
			require.Equal(t, newCart, env.read("c1").State)

			// c3: a batch holding the old stream's events and the new one's.
			var c3old []store.Event
			for _, e := range before {
				if e.StreamID == "c3" {
					c3old = append(c3old, e)
				}
			}
			env.recreate("c3")
			var c3new []store.Event
			for _, e := range env.log() {
				if e.StreamID == "c3" {
					c3new = append(c3new, e)
				}
			}
			env.apply(append(c3old, c3new...)...)
			require.Equal(t, newCart, env.read("c3").State)
		})
	}
}
