package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// The work queues' wait histogram (workqueue_queue_duration_seconds) has
// classic buckets a factor of 10 apart, useless for a p99, and a native
// histogram (controller-runtime sets a bucket factor of 1.1) that only the
// protobuf exposition carries: the benchmark asks for that.
const protoAccept = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"

// hist is one histogram series: a native one (schema, zero bucket, sparse
// buckets by index), or classic cumulative buckets when it has none.
type hist struct {
	native    bool
	schema    int32
	zeroCount float64
	buckets   map[int]float64 // native: index -> count; bucket i is (base^(i-1), base^i]
	classic   map[float64]float64
}

// scrapeQueueWaits reads each work queue's wait histogram from the
// manager at addr, by queue name.
func scrapeQueueWaits(ctx context.Context, addr string) (map[string]hist, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", protoAccept)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape the manager's histograms: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	out := map[string]hist{}
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		if mf.GetName() != "workqueue_queue_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "name" {
					out[l.GetValue()] = histOf(m.GetHistogram())
				}
			}
		}
	}
}

func histOf(h *dto.Histogram) hist {
	out := hist{buckets: map[int]float64{}, classic: map[float64]float64{}}
	if len(h.GetPositiveSpan()) == 0 && h.GetZeroCount() == 0 && h.GetZeroThreshold() == 0 {
		for _, b := range h.GetBucket() {
			out.classic[b.GetUpperBound()] = float64(b.GetCumulativeCount())
		}
		return out
	}
	out.native, out.schema, out.zeroCount = true, h.GetSchema(), float64(h.GetZeroCount())
	idx, k, c := int32(0), 0, int64(0)
	deltas := h.GetPositiveDelta()
	for _, sp := range h.GetPositiveSpan() {
		idx += sp.GetOffset()
		for range sp.GetLength() {
			c += deltas[k]
			k++
			out.buckets[int(idx)] = float64(c)
			idx++
		}
	}
	return out
}

// downscale merges native buckets to a coarser schema s: index i becomes
// ceil(i / 2^(schema-s)).
func (h hist) downscale(s int32) hist {
	if !h.native || s >= h.schema {
		return h
	}
	d := uint(h.schema - s)
	out := hist{native: true, schema: s, zeroCount: h.zeroCount, buckets: map[int]float64{}}
	for i, c := range h.buckets {
		out.buckets[(i+(1<<d)-1)>>d] += c
	}
	return out
}

// minus is what was observed since before.
func (h hist) minus(before hist) hist {
	if h.native != before.native {
		return h
	}
	if !h.native {
		out := hist{classic: map[float64]float64{}}
		for ub, c := range h.classic {
			out.classic[ub] = c - before.classic[ub]
		}
		return out
	}
	s := min(h.schema, before.schema)
	a, b := h.downscale(s), before.downscale(s)
	for i, c := range b.buckets {
		a.buckets[i] -= c
	}
	a.zeroCount -= b.zeroCount
	return a
}

// quantile returns the bounds of the bucket holding quantile q (0-1).
func (h hist) quantile(q float64) (lo, hi time.Duration, ok bool) {
	sec := func(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }
	if !h.native {
		ubs := make([]float64, 0, len(h.classic))
		for ub := range h.classic {
			ubs = append(ubs, ub)
		}
		sort.Float64s(ubs)
		if len(ubs) == 0 || h.classic[ubs[len(ubs)-1]] <= 0 {
			return 0, 0, false
		}
		rank, prev := q*h.classic[ubs[len(ubs)-1]], 0.0
		for _, ub := range ubs {
			if h.classic[ub] >= rank {
				return sec(prev), sec(ub), true
			}
			prev = ub
		}
		return 0, 0, false
	}
	idx := make([]int, 0, len(h.buckets))
	total := h.zeroCount
	for i, c := range h.buckets {
		idx = append(idx, i)
		total += c
	}
	if total <= 0 {
		return 0, 0, false
	}
	sort.Ints(idx)
	rank, seen := q*total, h.zeroCount
	if seen >= rank {
		return 0, 0, true
	}
	base := math.Pow(2, math.Pow(2, -float64(h.schema)))
	for _, i := range idx {
		if seen += h.buckets[i]; seen >= rank {
			return sec(math.Pow(base, float64(i-1))), sec(math.Pow(base, float64(i))), true
		}
	}
	return 0, 0, false
}

// p99 formats the 99th percentile as its bucket's bounds.
func (h hist) p99() string {
	lo, hi, ok := h.quantile(0.99)
	if !ok {
		return "n/a"
	}
	return fmt.Sprintf("%s-%s", secs(lo), secs(hi))
}
