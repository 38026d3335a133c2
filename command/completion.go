package command

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash, zsh or fish)",
		ArgsUsage: "bash|zsh|fish",
		Description: `Prints a script that completes hoard's commands and flags. Load it with:

   bash:  source <(hoard completion bash)     (or save it in /etc/bash_completion.d/hoard)
   zsh:   source <(hoard completion zsh)      (after compinit)
   fish:  hoard completion fish > ~/.config/fish/completions/hoard.fish

The bash and zsh scripts ask hoard itself for the candidates
(hoard ... --generate-bash-completion), so they follow the installed version.`,
		Action: runCompletion,
	}
}

func runCompletion(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("hoard completion bash|zsh|fish", "want one shell name, got %d arguments", c.NArg())
	}
	name := c.App.Name
	var script string
	switch shell := c.Args().First(); shell {
	case "bash":
		script = strings.ReplaceAll(bashCompletion, "PROG", name)
	case "zsh":
		script = strings.ReplaceAll(zshCompletion, "PROG", name)
	case "fish":
		s, err := c.App.ToFishCompletion()
		if err != nil {
			return fmt.Errorf("fish completion: %w", err)
		}
		script = s
	default:
		return usagef("hoard completion bash|zsh|fish", "unknown shell %q", shell)
	}
	printRaw(c.App.Writer, script)
	return nil
}

// bashCompletion asks the binary for candidates: urfave/cli answers
// --generate-bash-completion with the subcommands at that point of the
// command line, or its flags when the word being completed starts with "-".
const bashCompletion = `# bash completion for PROG; load with: source <(PROG completion bash)
_PROG_complete() {
    local cur words
    cur="${COMP_WORDS[COMP_CWORD]}"
    words=("${COMP_WORDS[@]:0:COMP_CWORD}")
    if [[ "$cur" == -* ]]; then
        words+=("$cur")
    fi
    COMPREPLY=($(compgen -W "$("${words[@]}" --generate-bash-completion 2>/dev/null)" -- "$cur"))
}
complete -o bashdefault -o default -F _PROG_complete PROG
`

// zshCompletion is the same question asked from zsh's completion system.
const zshCompletion = `#compdef PROG
# zsh completion for PROG; load with: source <(PROG completion zsh)
_PROG() {
    local -a words_before candidates
    words_before=("${(@)words[1,CURRENT-1]}")
    if [[ "${words[CURRENT]}" == -* ]]; then
        words_before+=("${words[CURRENT]}")
    fi
    candidates=("${(@f)$("${(@)words_before}" --generate-bash-completion 2>/dev/null)}")
    candidates=("${(@)candidates%%:*}")
    compadd -a candidates
}
compdef _PROG PROG
`
