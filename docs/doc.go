// Package docs renders the generated pages of hoard's documentation from
// the code: configuration.md from config.Keys and config.EnvVars, and
// commands.md from the help of every command of command.App. Run
// `go generate ./docs` (or ./config) after changing either; the tests fail
// while a generated page is stale, and check that every relative link in
// the pages and the README resolves.
package docs

//go:generate go run ./gen -dir .
