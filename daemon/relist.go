package daemon

import (
	"context"
	"time"
)

// relistMinInterval is the shortest time between a listing of the
// backups and one that POST /<site>/backup-stored (listSoon) asks for:
// whoever reaches the HTTP port can post as often as it likes, and each
// listing reads the whole basebackup folder of the bucket. hoard
// basebackup's note, which comes once per backup, waits at most this.
const relistMinInterval = 10 * time.Second

// waitRelist waits, for a listing listSoon asked for, until
// relistMinInterval has passed since the backup loop last listed the
// backups at listed, ctx ends, or a basebackup is requested: it takes the
// request and returns its id.
func (s *supervisor) waitRelist(ctx context.Context, listed time.Time) (requested string) {
	t := time.NewTimer(time.Until(listed.Add(relistMinInterval)))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ""
	case id := <-s.requests:
		s.log.Info().Str("request", id).Msg("basebackup requested")
		return id
	case <-t.C:
		return ""
	}
}
