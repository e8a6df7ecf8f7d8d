// Package skew measures where a service's traffic really goes after
// resolver caches have taken its answers, as specified in SKEW.md.
//
// A resolver cache asks at most once per TTL however many clients it
// serves, so answer counts understate big resolvers. Every answer a node
// sends is recorded (Recorder.Record, on the answer path: no lock, no
// allocation, no blocking) into bounded, mergeable per-node structures in
// 5-minute tumbling windows kept for an hour; Recorder.Report estimates each
// cache identity's client demand from its re-query gaps and reports the
// demand-weighted share of each endpoint with a bracket, next to the
// intended and the answered shares, with the skew index, concentration, TTL
// behaviour, drain times, alarms and a confidence grade. Nodes exchange
// Recorder.Export blobs so any node reports for the whole cluster.
//
// # Where this departs from SKEW.md, and why
//
//   - Per-identity gap statistics are computed at report time from the
//     identities' answer sequences (kept for the top-k identities, one hour,
//     in a bounded per-window log), not from per-entry streaming summaries
//     (gap histogram, smallest gaps). SKEW.md requires the sequences for
//     the cluster merge anyway — per-node gaps look like clamping — so
//     keeping both would double the memory for figures the merge must
//     recompute. The clamp floors of a 300-s clamper need about 50 minutes
//     of gaps: the hour of sequences is the long-term profile.
//   - Demand is weighted by the lookups each identity is estimated to have
//     sent in the window, a_r + λ̂_r·O_r (its answers there plus λ̂ times the
//     time its cache held an answer there), rather than by λ̂_r alone: an
//     identity that appears for the last minute of a window then weighs a
//     minute, not five, and a light cache (λτ ≪ 1) weighs its answers.
//     SKEW.md's Ŝ is the special case of identities present all window.
//   - The bracket also carries the sampling error of the measured λ̂ (±2σ,
//     Gamma-distributed with k gaps) and the Poisson noise of the lookups,
//     not only the bounded (saturated, pooled, few-gap) identities and the
//     tail, so it can cover the truth.
//   - The clamp test uses the exact Beta form of SKEW.md's
//     exp(−m·λ₁·(floor−τ)) (see analysis.go): the plug-in form cannot reach
//     0.01 with four gaps.
//   - The doorkeeper's cells keep their last-touch time beside the count,
//     which is how the "second sighting ≥ 0.5τ after the first" rule is
//     checked from a sketch; it spans the current and the previous window.
//     It is node-local and not exported: it decides what this node logs, a
//     peer's sketch says nothing about that, and it would add megabytes to
//     every export. Counters, HyperLogLogs and sequences merge exactly.
//   - The tail (answers to identities not held) is discounted in the point
//     estimate when its rate exceeds the calmest window of the hour (a flood
//     of spoofed sources carries no clients); the bracket spans the tail
//     from none to all of it.
//   - The ring keeps 13 windows, the open one and twelve closed, so a
//     one-hour report has a full hour whatever the time within the window.
//
// The simulator in skew/sim drives this code with synthetic resolver
// populations and checks SKEW.md's acceptance criteria against ground
// truth.
package skew
