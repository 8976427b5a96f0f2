package main

import (
	"context"
	"io"

	"github.com/troupehq/troupe/cli"
	"github.com/troupehq/troupe/examples/cart/service"
)

// admin is `cart admin ...`: Troupe's operator commands (package cli) with
// the service's projections registered, so `cart admin projections rebuild
// carts` rebuilds its read model. It returns the exit status.
func admin(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	return cli.Run(ctx, args, &cli.Config{
		Name:        "cart admin",
		Description: "Operate the cart service's database: migrations, tenants, streams and the carts projection.",
		Projections: service.AdminProjections(),
		Stdin:       stdin, Stdout: stdout, Stderr: stderr, Getenv: getenv,
	})
}
