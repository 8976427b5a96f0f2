package actor

import (
	"strconv"

	"github.com/google/uuid"
)

// commandWindow remembers the results of a stream's most recent command
// ids, oldest evicted first.
type commandWindow[E, S any] struct {
	capacity int
	results  map[string]Result[E, S]
	order    []string
}

func newCommandWindow[E, S any](capacity int) *commandWindow[E, S] {
	return &commandWindow[E, S]{capacity: capacity, results: map[string]Result[E, S]{}}
}

func (w *commandWindow[E, S]) get(id string) (Result[E, S], bool) {
	r, ok := w.results[id]
	return r, ok
}

func (w *commandWindow[E, S]) put(id string, r Result[E, S]) {
	if w.capacity <= 0 {
		return
	}
	if _, ok := w.results[id]; !ok {
		w.order = append(w.order, id)
	}
	w.results[id] = r
	for len(w.order) > w.capacity {
		delete(w.results, w.order[0])
		w.order[0] = ""
		w.order = w.order[1:]
	}
}

// commandNamespace is the UUIDv5 namespace of deterministic message ids.
var commandNamespace = uuid.MustParse("b7e0c3d2-5a41-4f0e-9c6a-3d2f1e8a7b64")

// messageID is the message id of the i-th event produced by command id
// cmdID on a stream. It is the same in every process, so appending a
// command's events twice is caught by the store: as an idempotent retry
// at the same positions, or as a duplicate message id elsewhere.
func messageID(k key, cmdID string, i int) string {
	name := k.kind + "\x00" + k.tenant + "\x00" + string(k.stream) + "\x00" + cmdID + "\x00" + strconv.Itoa(i)
	return uuid.NewSHA1(commandNamespace, []byte(name)).String()
}
