package faults

import (
	"context"
	"time"
)

// restartAPIServer stops the API server (SIGTERM, SIGKILL after 10 s),
// leaves it down for down, starts it again and waits until it serves
// (testenv's RestartAPIServer); it returns how long the stop took, whether it
// needed SIGKILL, and how long the API server was unavailable in all.
func (s *suite) restartAPIServer(ctx context.Context, down time.Duration, _ int) (stopped time.Duration, killed bool, unavailable time.Duration, err error) {
	r, err := s.env.RestartAPIServer(ctx, down)
	return r.Stopped, r.Killed, r.Unavailable, err
}
