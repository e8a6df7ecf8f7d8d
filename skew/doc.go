// Package skew measures where a service's traffic really goes after
// resolver caches have taken its answers, as specified in SKEW.md.
//
// A resolver cache asks at most once per TTL however many clients it
// serves, so answer counts understate big resolvers. Every answer a node
// sends is recorded (Recorder.Record, on the answer path: no lock, no
// allocation, no blocking — a lock-free hand-off drained by Run) into
// bounded, mergeable per-node structures in 5-minute tumbling windows kept
// for an hour: exact counters, HyperLogLogs, a Space-Saving top-k of cache
// identities behind a Count-Min doorkeeper, the answer sequences of the
// identities it holds, and the health/weight timeline. Recorder.Report
// estimates each identity's client demand from its re-query gaps and
// reports, per service and window, the intended, answered, occupancy and
// demand-weighted share of each endpoint and region with a bracket, the
// skew index (TVD), ρ and z, concentration, TTL behaviour, drain times,
// alarms and a confidence grade. Nodes exchange Recorder.Export blobs
// (DecodeExport reads them), so any node reports for the whole cluster.
//
// For Prometheus, a Report carries what the gauges need: per endpoint
// Estimated and Intended, TVD, Concentration.NEff (effective resolvers),
// and Alarm(kind, endpoint) over the closed set AlarmKinds().
//
// # Where this departs from SKEW.md, and why
//
//   - Gap statistics are computed at report time from the identities'
//     answer sequences (kept for the identities the top-k admitted, an
//     hour, in bounded per-window logs), not from per-entry streaming
//     summaries (gap histogram, smallest gaps). SKEW.md requires the
//     sequences for the cluster merge anyway — per-node gaps look like
//     clamping — so keeping both would double the memory for figures the
//     merge must recompute from the sequences.
//   - Decayed long-term profiles (profile.go) carry demand as well as clamp
//     floors: before a window leaves the ring, the report folds the gaps
//     ending in it, from the merged sequences, into a per-identity profile
//     decayed over 3 hours. An hour of gaps puts λ̂ of a 30-s cache within
//     about ±9 %, and under latency routing a heavy cache's whole share
//     moves with that error: in the simulator's headline scenarios 96.6 %
//     of the windows met TVD ≤ 0.02 without profiles (the misses were
//     latency windows where the heaviest cache's λ̂ sat 2σ off for the
//     whole hour), 100 % with them. They are node-local, built from merged
//     data, and only built by a node that reports at least hourly.
//   - Demand is weighted by the lookups each identity is estimated to have
//     sent in the window, a_r + λ̂_r·O_r (its answers there, plus λ̂ times
//     the time its cache held an answer there), not by λ̂_r alone: an
//     identity seen for the last minute of a window then weighs a minute,
//     and a light cache (λτ ≪ 1) weighs its answers. SKEW.md's Ŝ is the
//     case of identities present all window. A cache holds an answer for
//     max(τ, the smallest gap seen) at most and never past its next query
//     — except a pooled identity, whose next query is another cache's: its
//     answers each last τ and weigh λ̂/m̂ (m̂ caches).
//   - The clamp test is the exact Beta form of SKEW.md's
//     exp(−m·λ₁·(floor−τ)) < 0.01 (analysis.go): the plug-in form cannot
//     reach 0.01 with four gaps.
//   - Gaps that are holes — answers missing from the merged sequence
//     because a node did not hold the identity yet, evicted it, or ran out
//     of event budget — are left out of λ̂ when implausible for the demand
//     (analysis.go, kept): a single hole in an hour took a 10/s cache to
//     0.4/s in the simulator. And every node adopts the identities its
//     peers hold when it builds a report (Recorder.Report), so all nodes
//     log the same caches: a cache clamping to 600 s reaches each of three
//     name servers only every half hour and would otherwise stay in one
//     node's top-k, leaving the merged sequence full of holes.
//   - U, the unattributable share, counts the demand of identities whose λ̂
//     is not a measurement to ±25 % (bounded: saturated, pooled, fewer than
//     3 long gaps or excesses, fewer than 10 excesses (Gamma bounds); or
//     fewer than 18) and the tail. Without the last clause, the first
//     windows after start (each cache with a handful of gaps) looked
//     attributable while their estimates were off by 0.04.
//   - The bracket also carries ±2σ of the measured identities' sampling
//     error and the lookups' Poisson noise, not only the bounded identities
//     and the tail: without it, it cannot cover the truth. Identities with
//     fewer than 10 excesses enter it with their 95 % Gamma bounds instead
//     (λ·ΣX is Gamma(k, 1): a normal error is far too narrow there).
//   - Admission: the Count-Min sketch says "seen before" over the last
//     30-40 minutes (four sketches of two windows: a 600-s clamper spread
//     over three name servers reaches a node every ~30 minutes), and a
//     two-way pending table keyed by the exact identity holds the first
//     sighting's time for the "second query ≥ 0.5τ after the first" rule.
//     The sketch alone cannot keep spoofed sources out — a flood fills its
//     cells and every new source looks seen (2.6 % of a million got in,
//     measured) — the exact key can. The pending table also lets admission
//     log the sighting before it, so merged sequences have no hole where a
//     node's first sighting of an identity was. Peers' identities are
//     adopted without the doorkeeper (their own doorkeepers admitted them). The doorkeeper is node-local
//     and not exported: it decides what this node logs, and a peer's
//     sketch says nothing about that. Counters, HyperLogLogs and sequences
//     merge exactly.
//   - The tail (answers to identities not held, less their first answers)
//     is discounted in the point estimate when its rate exceeds twice the
//     ring's lower-quartile rate (a flood of spoofed sources carries no
//     clients); the bracket spans the tail from none to all of it.
//   - The ring keeps 13 windows, the open one and twelve closed, so a
//     one-hour report has its full hour whatever the time in the window. A
//     merged report uses only the windows every contributing node still
//     holds (Export.RingStart), or a node that has moved on would leave
//     holes in the sequences.
//
// The simulator in skew/sim drives this code with synthetic resolver
// populations and checks SKEW.md's acceptance criteria against ground
// truth.
package skew
