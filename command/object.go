package command

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/storage"
)

func objectCommand() *cli.Command {
	return &cli.Command{
		Name:  "object",
		Usage: "low-level access to stored objects, for debugging an archive",
		Description: `Keys are relative to the storage root (object_storage.prefix applies, the site prefix
does not): a site's WAL is under <site>/xlog/, its backups under <site>/basebackup/.`,
		Subcommands: []*cli.Command{
			{
				Name:      "ls",
				Usage:     "list stored objects",
				ArgsUsage: "[PREFIX]",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "long", Aliases: []string{"l"}, Usage: "also print each object's metadata"},
					&cli.BoolFlag{Name: "json", Usage: "print JSON"},
				},
				Action: runObjectLs,
			},
			{
				Name:      "get",
				Usage:     "decrypt and decompress an object to a file or stdout",
				ArgsUsage: "KEY",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write to `FILE` (atomically) instead of stdout"},
				},
				Action: runObjectGet,
			},
			{
				Name:      "put",
				Usage:     "compress, encrypt and store a file",
				ArgsUsage: "FILE KEY",
				Description: `Stores FILE under KEY (relative to the storage root) only if the storage holds no
object there: a stored object is never replaced, so a put to an existing KEY fails (exit 1)
and leaves it as it was.`,
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "metadata", Aliases: []string{"m"}, Usage: "extra metadata `KEY=VALUE` (repeatable)"},
					allowRootFlag,
				},
				Action: runObjectPut,
			},
		},
	}
}

type objectJSON struct {
	Key      string            `json:"key"`
	Size     int64             `json:"size"`
	Modified string            `json:"modified"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

func runObjectLs(c *cli.Context) error {
	if c.NArg() > 1 {
		return usagef("hoard object ls [PREFIX]", "too many arguments")
	}
	env, err := openSite(c)
	if err != nil {
		return err
	}
	defer env.archive.Store.Close()
	st := env.archive.Store
	var objs []objectJSON
	err = st.List(c.Context, c.Args().First(), func(o storage.Object) error {
		j := objectJSON{Key: o.Key, Size: o.Size, Modified: o.Modified.UTC().Format("2006-01-02T15:04:05Z")}
		if c.Bool("long") || c.Bool("json") {
			full, err := st.Stat(c.Context, o.Key)
			if err != nil {
				return fmt.Errorf("stat %s: %w", o.Key, err)
			}
			j.Metadata = full.Metadata
		}
		objs = append(objs, j)
		return nil
	})
	if err != nil {
		return fmt.Errorf("list objects: %w", err)
	}
	if c.Bool("json") {
		if objs == nil {
			objs = []objectJSON{}
		}
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(objs)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	for _, o := range objs {
		printf(tw, "%s\t%d\t%s", o.Key, o.Size, o.Modified)
		if c.Bool("long") {
			keys := make([]string, 0, len(o.Metadata))
			for k := range o.Metadata {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var kv []string
			for _, k := range keys {
				kv = append(kv, k+"="+o.Metadata[k])
			}
			printf(tw, "\t%s", strings.Join(kv, " "))
		}
		printf(tw, "\n")
	}
	return tw.Flush()
}

func runObjectGet(c *cli.Context) error {
	if c.NArg() != 1 {
		return usagef("hoard object get KEY [-o FILE]", "want exactly one KEY, got %q", c.Args().Slice())
	}
	key := c.Args().First()
	env, err := openSite(c)
	if err != nil {
		return err
	}
	defer env.archive.Store.Close()
	rc, _, err := env.archive.Codec.Open(c.Context, env.archive.Store, key)
	if err != nil {
		return fmt.Errorf("open %s: %w", key, err)
	}
	defer rc.Close()
	out := c.String("output")
	if out == "" || out == "-" {
		w := bufio.NewWriterSize(c.App.Writer, 1<<20)
		if _, err := io.Copy(w, rc); err != nil {
			return err
		}
		return w.Flush()
	}
	return storage.WriteFileAtomic(out, rc, nil)
}

func runObjectPut(c *cli.Context) error {
	if c.NArg() != 2 {
		return usagef("hoard object put FILE KEY", "want FILE and KEY")
	}
	path, key := c.Args().Get(0), c.Args().Get(1)
	md := storage.Metadata{}
	for _, kv := range c.StringSlice("metadata") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return usagef("use --metadata key=value", "bad metadata %q", kv)
		}
		md[k] = v
	}
	env, err := openSiteToWrite(c, "object put")
	if err != nil {
		return err
	}
	defer env.archive.Store.Close()
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	// Create, not Put: an archived object is never replaced, and this
	// key may be a WAL segment's or a backup's.
	stored, err := env.archive.Codec.Create(c.Context, env.archive.Store, key, f, fi.Size(), md)
	if errors.Is(err, storage.ErrExist) {
		return &exitError{code: ExitFailure, err: fmt.Errorf("store %s as %s: the storage already holds %s, and a stored object is never replaced: put the file under another key, or delete the object with the storage's own tools first if it is yours to lose", path, key, key)}
	}
	if err != nil {
		return fmt.Errorf("store %s as %s: %w", path, key, err)
	}
	env.log.Info().Str(logKey, key).Int64("plain_bytes", stored.PlainSize).Int64("stored_bytes", stored.StoredSize).Msg("object stored")
	return nil
}
