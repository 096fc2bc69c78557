package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is the release, set at link time: go build -ldflags "-X main.version=v1.2.3"
// (the Makefile's build target does). Without it, the module version or VCS revision
// recorded by the Go toolchain is reported instead.
var version = ""

// VersionCommand implements `revguard version`.
type VersionCommand struct {
	Stdout io.Writer
}

// Run prints the version line.
func (c *VersionCommand) Run(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("revguard version", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fmt.Fprint(c.Stdout, c.Usage())
			return err
		}
		return usageErrorf("version: %s", flagError(err))
	}
	if fs.NArg() > 0 {
		return usageErrorf("version: unexpected argument %q", fs.Arg(0))
	}
	fmt.Fprintln(c.Stdout, versionString(version, readBuildInfo()))
	return nil
}

// Usage returns the help text of `revguard version`.
func (c *VersionCommand) Usage() string {
	return "Usage: revguard version\n\nPrints the version of revguard, the Go version and the platform.\n"
}

// buildInfo is what versionString needs from runtime/debug.BuildInfo.
type buildInfo struct {
	moduleVersion string // "(devel)" when built from a checkout
	revision      string // vcs.revision, if the toolchain recorded it
	modified      bool   // vcs.modified
}

func readBuildInfo() buildInfo {
	var bi buildInfo
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return bi
	}
	bi.moduleVersion = info.Main.Version
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			bi.revision = s.Value
		case "vcs.modified":
			bi.modified = s.Value == "true"
		}
	}
	return bi
}

// versionString formats the version line: the link-time version if set, else the
// module version, else the VCS revision, else "dev".
func versionString(linked string, bi buildInfo) string {
	v := linked
	if v == "" && bi.moduleVersion != "" && bi.moduleVersion != "(devel)" {
		v = bi.moduleVersion
	}
	if v == "" && bi.revision != "" {
		v = bi.revision
		if len(v) > 12 {
			v = v[:12]
		}
		if bi.modified {
			v += "-dirty"
		}
	}
	if v == "" {
		v = "dev"
	}
	return fmt.Sprintf("revguard %s (%s %s/%s)", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
