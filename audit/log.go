package audit

import "log/slog"

// Notable reports whether the run hit a limit (other than cpu throttling,
// which only slows a run), had a syscall denied or a network attempt
// refused, ran degraded, or failed to start.
func (r *Record) Notable() bool {
	refused := false
	for _, c := range r.Network {
		refused = refused || !c.Allowed
	}
	limited := false
	for _, l := range r.Exit.LimitsHit {
		limited = limited || l != LimitCPUThrottled
	}
	return limited || len(r.Denials) > 0 || refused ||
		len(r.Enforcement.Degraded) > 0 || r.Exit.Reason == ReasonSetupFailed
}

// LogValue is the record's summary for log/slog: id, tool, policy hash,
// exit (reason, code, signal, limits hit), timing, resources, the number
// of denials with the first three, network attempts and refusals,
// degradations, and the error of a failed setup.
func (r *Record) LogValue() slog.Value {
	var first []string
	for _, d := range r.Denials {
		if len(first) == 3 {
			break
		}
		first = append(first, d.Syscall+" "+d.Detail)
	}
	refused := 0
	for _, c := range r.Network {
		if !c.Allowed {
			refused++
		}
	}
	attrs := []slog.Attr{
		slog.String("id", r.ID),
		slog.String("tool", r.Tool),
		slog.String("policy", r.Policy.Hash),
		slog.String("reason", string(r.Exit.Reason)),
		slog.Int("code", r.Exit.Code),
		slog.Any("limits_hit", r.Exit.LimitsHit),
		slog.Float64("duration_ms", r.DurationMS),
		slog.Float64("setup_ms", r.SetupMS),
		slog.Uint64("cpu_us", r.Resources.CPUUserUS+r.Resources.CPUSystemUS),
		slog.Uint64("memory_peak_bytes", r.Resources.MemoryPeakBytes),
		slog.Int("denials", len(r.Denials)),
		slog.Any("first_denials", first),
		slog.Int("network", len(r.Network)),
		slog.Int("network_refused", refused),
	}
	if r.Exit.Signal != "" {
		attrs = append(attrs, slog.String("signal", r.Exit.Signal))
	}
	if len(r.Enforcement.Degraded) > 0 {
		attrs = append(attrs, slog.Any("degraded", r.Enforcement.Degraded))
	}
	if r.Error != "" {
		attrs = append(attrs, slog.String("error", r.Error))
	}
	return slog.GroupValue(attrs...)
}
