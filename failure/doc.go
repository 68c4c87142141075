// Package failure is a phi-accrual failure detector (Hayashibara, Défago,
// Yared and Katayama, 2004) for a gossip membership protocol.
//
// A Detector tracks many peers, keyed by string. It has no goroutines and no
// clock of its own: every method takes the current time as a time.Time, which
// makes it deterministic under test and in simulation. It is not safe for
// concurrent use; the caller serialises calls.
//
// # The formula
//
// Instead of a yes/no verdict, an accrual detector outputs a suspicion level
// phi that grows with the silence t since a peer's last heartbeat:
//
//	phi(t) = -log10(P(no heartbeat for t)) = -log10(1 - F(t))
//
// with F the distribution of heartbeat inter-arrival times fitted to the
// recent history. This package models inter-arrival times as exponential with
// the measured mean, as Cassandra does, so 1 - F(t) = exp(-t/mean) and
//
//	phi(t) = t / (mean * ln 10) ≈ 0.434 * t / mean
//
// Phi 1 means a 10% chance that a live peer would stay silent that long,
// phi 8 a chance of 1e-8.
//
// Implementations differ here, and "threshold 8" is not the same thing in
// all of them. Cassandra uses 0.434 * t / mean, as here; chitchat uses
// t / mean (its constant is 1); the paper and Akka fit a normal distribution
// (mean and standard deviation) and use its CDF, which convicts a very
// regular peer much sooner. With this package's formula a peer is suspected
// (phi > Threshold) after a silence of
//
//	Threshold * ln 10 * mean ≈ 2.303 * Threshold * mean
//
// so the default threshold 8 means about 18.4 mean intervals: with heartbeats
// every 100 ms, about 1.84 s of silence; with heartbeats every second, about
// 18.4 s. In chitchat the same threshold means 8 mean intervals.
//
// Config.Distribution = Normal selects the paper's and Akka's model instead:
// intervals are normal with the measured mean and standard deviation (at
// least Config.MinStdDeviation), phi = -log10(P(X > t)), and a peer is
// suspected after a silence of mean + z*sd, z = 5.61 deviations for phi 8.
// It suits sparse, regular heartbeats: with one every 500 ms and a floor of
// 125 ms, a silence of 1.2 s; on a link that loses one heartbeat in four,
// the deviation grows and the bound with it (about 2 s).
//
// # Guards
//
// Window: only the last Config.WindowSize inter-arrival samples of a peer are
// kept (default 100), in a ring of uint32 microseconds allocated lazily as it
// fills, with a running sum, so the mean follows changes in the peer's rate
// and costs O(1) per heartbeat. A full default window costs 400 bytes per
// peer, plus about 50 bytes of bookkeeping and the map entry.
//
// Prior: a new peer has no history, so the mean includes
// Config.PriorWeight pseudo-samples of Config.InitialInterval (defaults 2
// and 1 s), which take slots of the window and give them up to real
// samples: with w = min(PriorWeight, WindowSize - samples),
// mean = (sum of samples + w*InitialInterval) / (samples + w). It starts at
// the prior and moves to the measured mean; with a full window it is the
// measured mean alone.
//
// Min samples: until a peer has Config.MinSamples recorded intervals
// (default 2), Phi is computed as usual but Suspect also requires the silence
// to exceed Threshold * ln 10 * InitialInterval, the silence at which the
// prior alone would convict (18.4 s with the defaults). A peer that sent one
// heartbeat and died is therefore still convicted, and a peer whose first
// interval happened to be short is not convicted early.
//
// Cap: an interval longer than Config.MaxInterval (default 10 s) is recorded
// as MaxInterval, so one long silence of a peer that came back does not
// poison its mean for the rest of the window.
//
// Local pause: if the detecting process itself stalls (a GC pause, a
// suspended VM, a blocked event loop), every peer looks silent when it
// resumes. Tick is called once per local round; when it sees more than
// Config.PauseThreshold (default 2 s) since the previous Tick, it moves every
// peer's last arrival time forward by the length of the gap (not past now),
// so nobody is convicted because of the stall, and the stalled time is never
// recorded as an interval. Call Tick at the start of each round, before
// delivering the round's heartbeats, and keep PauseThreshold comfortably
// above the round interval. Cassandra has the same guard
// (MAX_LOCAL_PAUSE_IN_MS).
//
// Heartbeat intervals <= 0 (duplicates, out-of-order calls) record nothing.
package failure
