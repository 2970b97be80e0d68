package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/keywarden/keywarden/internal/apisim"
)

// extCounts is apisim's call count per "api endpoint" (all status codes),
// e.g. "reevit create" or "revio exchange".
type extCounts map[string]int

// externalCounts reads both simulators' counts.
func (cl *cluster) externalCounts(ctx context.Context) (extCounts, error) {
	c, err := cl.sim.Control.Counts(ctx)
	if err != nil {
		return nil, fmt.Errorf("apisim counts: %w", err)
	}
	return flatten(c), nil
}

func flatten(c apisim.Counts) extCounts {
	out := extCounts{}
	for api, m := range map[string]map[string]map[int]int{"reevit": c.Reevit, "revio": c.Revio} {
		for ep, codes := range m {
			for _, n := range codes {
				out[api+" "+ep] += n
			}
		}
	}
	return out
}

// externalSince makes sure the audit log holds every request completed so
// far (syncAudit), then reads both simulators' counts and returns the calls
// made since the reading before.
func (cl *cluster) externalSince(ctx context.Context, before extCounts) (extCounts, error) {
	if err := cl.syncAudit(ctx); err != nil {
		return nil, err
	}
	now, err := cl.externalCounts(ctx)
	if err != nil {
		return nil, err
	}
	return now.minus(before), nil
}

// minus is the difference since an earlier reading.
func (e extCounts) minus(before extCounts) extCounts {
	out := extCounts{}
	for k, v := range e {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// api keeps the endpoints of one API ("reevit" or "revio").
func (e extCounts) api(name string) extCounts {
	out := extCounts{}
	for k, v := range e {
		if strings.HasPrefix(k, name+" ") {
			out[k] = v
		}
	}
	return out
}

func (e extCounts) total() int {
	n := 0
	for _, v := range e {
		n += v
	}
	return n
}

// perObject formats the counts divided by n.
func (e extCounts) perObject(n int) string {
	ks := make([]string, 0, len(e))
	for k := range e {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var parts []string
	for _, k := range ks {
		parts = append(parts, k+" "+ratio(e[k], n))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
