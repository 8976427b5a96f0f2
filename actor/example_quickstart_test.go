package actor_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/decider"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
)

type deposit struct {
	Account string
	Amount  int
}

type deposited struct {
	Amount int `json:"amount"`
}

type balance struct{ Total int }

// Example_quickstart is the code sample of the README: a decider, a store, a
// host, and two commands, one of them rejected by a domain rule.
func Example_quickstart() {
	ctx := context.Background()
	accounts := decider.Decider[deposit, deposited, balance]{
		Decide: func(c deposit, s balance) ([]deposited, error) {
			if c.Amount <= 0 {
				return nil, decider.Rejectf("amount must be positive, got %d", c.Amount)
			}
			return []deposited{{Amount: c.Amount}}, nil
		},
		Evolve:       func(s balance, e deposited) balance { return balance{Total: s.Total + e.Amount} },
		InitialState: func() balance { return balance{} },
	}
	codec := store.NewJSONCodec().MustRegister("Deposited", deposited{})
	host, _ := actor.New(memory.New(), &actor.Config{Codec: codec})
	accts, _ := actor.Register(host, actor.Kind[deposit, deposited, balance]{
		Name: "account", StreamType: "account", Decider: accounts,
		Route: func(c deposit) (string, store.StreamID) { return "acme", store.StreamID(c.Account) },
	})
	_ = host.Start(ctx)
	defer host.Stop(ctx)

	res, err := accts.Send(ctx, deposit{Account: "a-1", Amount: 30}, actor.SendOptions{ReturnState: true})
	fmt.Println(res.Version, res.State.Total, err)
	_, err = accts.Send(ctx, deposit{Account: "a-1", Amount: -5})
	fmt.Println(errors.Is(err, decider.ErrRejected), err)
	// Output:
	// 1 30 <nil>
	// true amount must be positive, got -5
}
