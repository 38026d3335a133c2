package command

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/replication"
)

// nodeTimeout bounds the question to one node in nodeSystemID.
const nodeTimeout = 10 * time.Second

// nodeSystemID asks the site's nodes, in order, for their cluster's
// system identifier (replication.QueryServer, an ordinary connection,
// as hoard check makes): the first that answers says it. hoard retention
// and hoard verify --restore go by it (archive.OfSystem), so that another
// cluster's backups, copied from a site sharing the key pair, do not
// count. Without an answer it returns "" and the last error, or an error
// saying the site has no nodes.
func nodeSystemID(ctx context.Context, site *config.Site) (string, error) {
	err := errors.New("the site has no nodes")
	for _, n := range site.Nodes {
		nctx, cancel := context.WithTimeout(ctx, nodeTimeout)
		srv, qerr := replication.QueryServer(nctx, n.ConnString())
		cancel()
		if qerr == nil {
			return strconv.FormatUint(srv.SystemID, 10), nil
		}
		err = qerr
	}
	return "", err
}
