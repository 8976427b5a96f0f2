package troupetest

import (
	"context"

	"github.com/troupehq/troupe/actor"
)

// Send returns a When step that sends cmd to its stream's actor through
// agg (a kind registered on a started actor.Host), as the service would:
//
//	s.When(troupetest.Send(carts, CheckOut{Cart: "cart-1"}))
func Send[C, E, S any](agg *actor.Aggregate[C, E, S], cmd C, opts ...actor.SendOptions) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		_, err := agg.Send(ctx, cmd, opts...)
		return err
	}
}
