package consumer_test

import (
	"context"
	"log"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/projection/consumer"
	"github.com/troupehq/troupe/store"
)

// The seed's consumer: handlers per event type and for every event.
func ExampleConsumer() {
	ctx := context.Background()
	var pool *pgxpool.Pool

	c, err := consumer.New(pool, &consumer.Config{Name: "mailer"})
	if err != nil {
		log.Fatal(err)
	}
	c.Subscribe("CartCheckedOut", func(ctx context.Context, tx pgx.Tx, e store.Event) error {
		// Enqueue a mail in the same transaction as the checkpoint.
		_, err := tx.Exec(ctx, `INSERT INTO outbox (topic, payload) VALUES ('mail', $1)`, e.Data)
		return err
	})
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Stop(ctx)
}
