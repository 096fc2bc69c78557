// Command revguard is Revenue Guard's one binary: `revguard serve` runs the flash-sale
// guard in embedded mode (journal, SQLite ledger and sessions under --data-dir) or as a
// node of the distributed mode (Redis and PostgreSQL), and the other subcommands export
// and verify its ledger or load-test a server.
//
// main only calls run, so that tests drive exactly what the binary does: the end-to-end
// tests call run in-process on 127.0.0.1:0, the shutdown and crash tests run the test
// binary again as the server (TestMain dispatch) and signal it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes of the binary.
const (
	exitOK    = 0 // success, or a graceful shutdown on SIGTERM/SIGINT
	exitError = 1 // any failure at run time
	exitUsage = 2 // a command-line or configuration mistake
)

func main() {
	// The context ends at the first SIGINT or SIGTERM; stop restores the default
	// handling, so that a second signal kills a shutdown that hangs.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, errorMessage(err))
	}
	os.Exit(exitCode(err))
}

// run is the whole program: it dispatches args to a subcommand. It reads the
// environment only through getenv and writes only to stdout and stderr. It returns nil
// after a graceful shutdown, flag.ErrHelp after printing help, a *usageError for a
// command-line or configuration mistake, and any other error for a failure.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, mainUsage())
		return usageErrorf("no command given")
	}
	name, rest := args[0], args[1:]
	switch name {
	case "-h", "-help", "--help", "help":
		return runHelp(rest, getenv, stdout)
	case "-version", "--version":
		name = "version"
	}
	cmd, ok := newCommand(name, getenv, stdout, stderr)
	if !ok {
		return usageErrorf("unknown command %q", name)
	}
	return cmd.Run(ctx, rest)
}

// command is a subcommand of revguard, as litestream's are.
type command interface {
	// Run parses args and runs the subcommand until it is done or ctx ends.
	Run(ctx context.Context, args []string) error
	// Usage returns the subcommand's help text.
	Usage() string
}

// commandInfo names a subcommand in the help text.
type commandInfo struct{ name, summary string }

// commands lists the subcommands for the help text, in display order.
func commands() []commandInfo {
	return []commandInfo{
		{"serve", "run the server (embedded under --data-dir, or a node on Redis and PostgreSQL)"},
		{"export", "write the ledger as CSV or JSON lines"},
		{"verify", "check that the ledger matches the reservation engine's state"},
		{"loadtest", "run a simulated flash sale against a server and check the outcome"},
		{"version", "print the version"},
		{"help", "show this help, or a command's (revguard help serve)"},
	}
}

// newCommand builds the subcommand name, wiring it to the process's environment and
// output.
func newCommand(name string, getenv func(string) string, stdout, stderr io.Writer) (command, bool) {
	switch name {
	case "serve":
		return &ServeCommand{Getenv: getenv, Stdout: stdout, Stderr: stderr}, true
	case "version":
		return &VersionCommand{Stdout: stdout}, true
	case "export":
		return &ExportCommand{Getenv: getenv, Stdout: stdout, Stderr: stderr}, true
	case "verify":
		return &VerifyCommand{Getenv: getenv, Stdout: stdout, Stderr: stderr}, true
	case "loadtest":
		return &LoadtestCommand{Getenv: getenv, Stdout: stdout, Stderr: stderr}, true
	}
	return nil, false
}

// runHelp prints the main help, or a subcommand's.
func runHelp(args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, mainUsage())
		return flag.ErrHelp
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, mainUsage())
		return flag.ErrHelp
	}
	cmd, ok := newCommand(args[0], getenv, io.Discard, io.Discard)
	if !ok {
		return usageErrorf("unknown command %q", args[0])
	}
	fmt.Fprint(stdout, cmd.Usage())
	return flag.ErrHelp
}

// mainUsage is the text of `revguard --help`: the commands, then every flag of
// `revguard serve` with its environment variable and default.
func mainUsage() string {
	var b strings.Builder
	b.WriteString(`Revenue Guard sells a limited stock to a crowd that arrives all at once: no unit sold
twice, no bot served, no acknowledged sale lost.

Usage:
  revguard <command> [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-9s %s\n", c.name, c.summary)
	}
	b.WriteString(`
Start a server on the embedded default with:
  revguard serve
or a node of the distributed mode (start any number with the same settings) with:
  revguard serve --redis-url redis://HOST:6379/0 --postgres-url postgres://USER@HOST/DB --admin-token TOKEN

Flags of revguard serve (each has an environment variable; the flag wins):
`)
	writeOptions(&b, defaultOptions())
	return b.String()
}

// usageError is a command-line or configuration mistake: the binary exits with status
// 2 and a hint to read the help.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usageErrorf returns a *usageError with a formatted message.
func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitCode maps run's result to the process's exit status.
func exitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	}
	if _, ok := errors.AsType[*usageError](err); ok {
		return exitUsage
	}
	return exitError
}

// errorMessage is the line main prints for a failed run.
func errorMessage(err error) string {
	if _, ok := errors.AsType[*usageError](err); ok {
		return "revguard: " + err.Error() + "\nrun 'revguard help' for usage"
	}
	return "revguard: " + err.Error()
}
