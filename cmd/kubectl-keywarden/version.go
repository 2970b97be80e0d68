package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/keywarden/keywarden/api/v1alpha1"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise the module version of the build, or "dev".
var version = "dev"

func init() {
	if version != "dev" {
		return
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		version = bi.Main.Version
	}
}

func newVersionCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the plugin's version and the API version it speaks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(o.out, "kubectl-keywarden %s (%s, %s/%s), API %s\n",
				version, runtime.Version(), runtime.GOOS, runtime.GOARCH, v1alpha1.GroupVersion)
			return err
		},
	}
}
