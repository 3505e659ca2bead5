// Watchdog: ends a multi-rank job whose ranks stopped making progress, with
// one line naming the stuck rank and the phase it was in, instead of leaving
// every rank blocked in a collective forever.
//
// Progress: each rank keeps a process-wide counter that every phase marker
// bumps on entry and exit (WatchdogPhase, CollectiveWait, watchdog_tick),
// plus the name of the innermost phase and the step. Markers are two relaxed
// atomic stores: cheap enough for every micro-batch.
//
// Heartbeats: a thread per rank sends (phase, step, counter, waiting) every
// timeout / 10 seconds (at most 1 s) to every other rank, over its own
// duplicate of MPI_COMM_WORLD, so they never match the training's messages.
// Every rank is a judge of every rank, so a rank is named even when it
// cannot speak (stopped with SIGSTOP, swapped out): its silence is the
// evidence, seen by whichever ranks still run. Threads that call MPI need
// MPI_THREAD_MULTIPLE (optim/comm.cpp asks for it; OpenMPI 4 provides it).
// The price: world - 1 small sends per rank per interval (72 bytes each;
// at 1 s and 256 ranks, 18 KB/s a rank), so all-to-all suits the jobs this
// engine runs; a far larger one would want a tree of judges.
//
// Judgement, on each rank against its own clock (no clock sync needed): the
// job is stuck when no rank's counter has moved for `timeout` seconds. A rank
// inside a collective (CollectiveWait) is waiting for the others, not stuck;
// so the rank named is, in order of preference: one that fell silent, one
// that is not waiting, the one whose counter moved longest ago. Of the ranks
// that judge the job stuck, the lowest one still speaking (every lower rank
// silent or finished) prints
//   error: rank R made no progress for N s (last phase: P, step S); ending the job
// and calls MPI_Abort, which ends every rank. So any set of frozen ranks short
// of all of them is caught, by the lowest rank left. A silent rank's phase
// and step are those of its last heartbeat (up to one interval old).
//
// Every rank frozen at once (the whole job stopped, e.g. SIGSTOP to the
// process group, or every node swapped out) leaves no thread to judge: no
// process of the job can run, so the job waits until it is continued or
// killed from outside (mpirun --timeout, the scheduler's time limit). Ranks
// that are all stuck but not frozen (every training thread hung, heartbeat
// threads running) are caught: nobody's counter moves.
//
// The timeout bounds the longest stretch without a marker: one micro-batch's
// forward and backward, one batch of rollouts, one checkpoint write. The
// default, 600 s, suits multi-billion-parameter models on slow disks; small
// runs can use far less (the tests use 3 s).
//
// A rank that finishes (or fails: its error ends the job anyway) says so in
// a last heartbeat, and is no longer judged.
#pragma once
#include <memory>

namespace polaris {

// RAII: this rank is in phase `name` ("setup" outside every marker) (a string literal: only the pointer is
// kept) until the marker is destroyed; phases nest.
class WatchdogPhase {
 public:
  explicit WatchdogPhase(const char* name);
  ~WatchdogPhase();
  WatchdogPhase(const WatchdogPhase&) = delete;
  WatchdogPhase& operator=(const WatchdogPhase&) = delete;

 private:
  const char* previous_;
};

// RAII: this rank waits in a collective for the other ranks (the phase name
// is left as it is). optim/comm.cpp marks every MPI collective.
class CollectiveWait {
 public:
  CollectiveWait();
  ~CollectiveWait();
  CollectiveWait(const CollectiveWait&) = delete;
  CollectiveWait& operator=(const CollectiveWait&) = delete;
};

// RAII: this rank is in optimizer step `step` (1-based; 0 before the
// first), phase "training step" until a finer marker says more.
class WatchdogStep : public WatchdogPhase {
 public:
  explicit WatchdogStep(int step);
};

// Progress inside one long phase (a loop over many items).
void watchdog_tick();

class Watchdog {
 public:
  // Collective: every rank constructs it. Starts the heartbeat thread when
  // timeout_seconds > 0, MPI is initialised with more than one rank and
  // MPI_THREAD_MULTIPLE; otherwise does nothing (with a note on stdout when
  // only the thread level is missing).
  explicit Watchdog(double timeout_seconds);
  // Sends the last heartbeat ("finished") and stops the thread.
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  struct Monitor;
  std::unique_ptr<Monitor> monitor_;
};

}  // namespace polaris
