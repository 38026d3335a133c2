// Command gen writes the generated pages of docs/ (configuration.md and
// commands.md): `go generate ./docs`.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/hoardbackup/hoard/docs"
)

func main() {
	dir := flag.String("dir", ".", "the docs directory")
	flag.Parse()
	pages, err := docs.Pages()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
	names := make([]string, 0, len(pages))
	for n := range pages {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(*dir, n), pages[n], 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
	}
}
