package main

import (
	"context"
	"fmt"
	"time"
)

type maxConfig struct {
	backends           []string
	start, step, limit int
	refine             int
	stepDuration       time.Duration
	confirm            time.Duration
	p99                time.Duration
}

// runSubmitMax searches for the highest submit rate that the server
// sustains with every operation completing and p99 under cfg.max.p99:
// steps of +step from start until one fails, then bisection between the
// last pass and the first failure. Each step holds its rate for
// stepDuration on the same server, after its drafts were prepared with the
// server otherwise idle. With confirm set, the found rate is then held that
// long, stepping down by a tenth until it passes.
func runSubmitMax(ctx context.Context, cfg config, backend string) error {
	mc := cfg.max
	rig, err := newSubmitRig(ctx, cfg, backend, 10)
	if err != nil {
		return err
	}
	defer rig.close()
	try := func(rate int, d time.Duration) (stepResult, error) {
		n := int(float64(rate)*d.Seconds()) + 10
		t0 := time.Now()
		if err := rig.prepare(ctx, n); err != nil {
			return stepResult{}, err
		}
		prep := time.Since(t0)
		res, err := rig.step(ctx, cfg, rate, 0, d, fmt.Sprintf("%s-submit_max-%d", backend, rate))
		if err != nil {
			return res, err
		}
		verdict := "FAIL"
		if res.ok(mc.p99) {
			verdict = "pass"
		}
		infof("%s/submit_max: %s (%d drafts prepared in %.1fs) %s", backend, verdict, n, prep.Seconds(), res)
		return res, nil
	}
	var best *stepResult
	lastPass, firstFail := 0, 0
	for rate := mc.start; rate <= mc.limit; rate += mc.step {
		res, err := try(rate, mc.stepDuration)
		if err != nil {
			return err
		}
		if !res.ok(mc.p99) {
			firstFail = rate
			break
		}
		best, lastPass = &res, rate
	}
	for i := 0; i < mc.refine && firstFail > 0 && firstFail-lastPass > mc.step/4; i++ {
		rate := (lastPass + firstFail) / 2
		if lastPass == 0 {
			rate = firstFail / 2
		}
		res, err := try(rate, mc.stepDuration)
		if err != nil {
			return err
		}
		if res.ok(mc.p99) {
			best, lastPass = &res, rate
		} else {
			firstFail = rate
		}
	}
	if mc.confirm > 0 && best != nil {
		for rate := lastPass; rate > 0; rate = rate * 9 / 10 {
			res, err := try(rate, mc.confirm)
			if err != nil {
				return err
			}
			if res.ok(mc.p99) {
				best = &res
				break
			}
			best = nil
		}
	}
	rig.logSummary("submit_max")
	if best == nil {
		benchf("backend=%s scenario=submit_max sustained_submits_per_s=0 p99_ms=0", backend)
		return fmt.Errorf("no rate from %d/s passed", mc.start)
	}
	benchf("backend=%s scenario=submit_max sustained_submits_per_s=%d p99_ms=%s", backend, best.rate, ms(best.lat.pct(99)))
	failing := "none up to -max-limit"
	if firstFail > 0 {
		failing = fmt.Sprintf("%d/s", firstFail)
	}
	infof("%s/submit_max: sustained %d/s, held for %.0fs (first failing rate: %s)", backend, best.rate, best.elapsed.Seconds(), failing)
	return nil
}
