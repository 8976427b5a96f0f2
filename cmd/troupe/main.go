package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/troupehq/troupe/cli"
	"github.com/troupehq/troupe/cmd/troupe/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run is the troupe command: package cli with no projection registered,
// plus bench. It returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) > 0 && args[0] == bench.MemberCommand {
		// A member of `troupe bench --cluster`, started by the benchmark.
		return bench.RunMember(ctx, args[1:], stderr)
	}
	return cli.Run(ctx, args, &cli.Config{
		Name:        "troupe",
		Description: "Operate a Troupe event store: migrations, tenants, streams, projections and the benchmark.",
		Commands: []cli.Command{{Name: "bench", Help: "Run the cart benchmark: the actor host against a stateless handler.",
			Cmd: &benchCmd{}}},
		Stdin: stdin, Stdout: stdout, Stderr: stderr, Getenv: getenv,
	})
}
