// Command pgrun starts one throwaway PostgreSQL server, runs a command with
// DATABASE_URL pointing at it, stops the server and exits with the command's
// exit status.
//
// Usage:
//
//	pgrun [-log FILE] [-quiet] [-v] -- COMMAND [ARG...]
//
// SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded to the command; the
// server is stopped once the command has exited. A command killed by a
// signal makes pgrun exit with 128 + the signal number, as a shell would.
// scripts/with-postgres.sh builds and runs it so that every package of a
// `go test ./...` shares one server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/troupehq/troupe/internal/pgserver"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// exitUsage and exitSetup are pgrun's own failures; anything else is the
// command's status.
const (
	exitUsage = 2
	exitSetup = 125
)

func run(args []string, stderr io.Writer) int {
	flags := flag.NewFlagSet("pgrun", flag.ContinueOnError)
	flags.SetOutput(stderr)
	logPath := flags.String("log", "", "keep the server log in `FILE` (default: removed with the server)")
	quiet := flags.Bool("quiet", false, "print nothing but errors")
	verbose := flags.Bool("v", false, "also print the server's start and stop steps with timings")
	flags.Usage = func() {
		fmt.Fprintln(stderr, "usage: pgrun [-log FILE] [-quiet] [-v] -- COMMAND [ARG...]")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		return exitUsage
	}
	command := flags.Args()
	if len(command) == 0 {
		flags.Usage()
		return exitUsage
	}

	// Catch signals from the start so that one arriving while the server
	// starts still stops it.
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(signals)

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type started struct {
		server *pgserver.Server
		err    error
	}
	startDone := make(chan started, 1)
	began := time.Now()
	go func() {
		s, err := pgserver.Start(ctx, pgserver.Options{LogPath: *logPath, Logger: logger})
		startDone <- started{s, err}
	}()
	var server *pgserver.Server
	select {
	case r := <-startDone:
		if r.err != nil {
			fmt.Fprintf(stderr, "pgrun: %v\n", r.err)
			return exitSetup
		}
		server = r.server
	case sig := <-signals:
		cancel()
		if r := <-startDone; r.err == nil {
			if err := r.server.Stop(); err != nil {
				fmt.Fprintf(stderr, "pgrun: %v\n", err)
			}
		}
		return 128 + int(sig.(syscall.Signal))
	}
	if !*quiet {
		fmt.Fprintf(stderr, "pgrun: PostgreSQL ready on 127.0.0.1:%d in %v\n", server.Port(), time.Since(began).Round(time.Millisecond))
	}

	code := runCommand(command, server.ConnString(), signals, stderr)

	if err := server.Stop(); err != nil {
		fmt.Fprintf(stderr, "pgrun: %v\n", err)
		if code == 0 {
			code = exitSetup
		}
	}
	return code
}

// runCommand runs command with DATABASE_URL set, forwarding signals, and
// returns its exit status.
func runCommand(command []string, databaseURL string, signals <-chan os.Signal, stderr io.Writer) int {
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdin = os.Stdin
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	cmd.Env = append(os.Environ(), "DATABASE_URL="+databaseURL)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "pgrun: starting %s: %v\n", command[0], err)
		return 127
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case sig := <-signals:
			// The command may already have exited; Wait reports that.
			_ = cmd.Process.Signal(sig)
		case err := <-done:
			return exitStatus(err, stderr)
		}
	}
}

func exitStatus(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		fmt.Fprintf(stderr, "pgrun: waiting for the command: %v\n", err)
		return exitSetup
	}
	if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return exitErr.ExitCode()
}
