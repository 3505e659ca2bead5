// The watchdog (see watchdog.h): phase markers, heartbeats, the judgement.
#include "optim/watchdog.h"

// C API only (no deprecated C++ bindings).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>
#include <tuple>
#include <vector>

namespace polaris {

namespace {

// This rank's state, written by the training thread, read by the heartbeat
// thread. Relaxed order is enough: a heartbeat needs a recent value, not a
// consistent snapshot of all four.
std::atomic<const char*> g_phase{"setup"};
std::atomic<int> g_step{0};
std::atomic<uint64_t> g_progress{0};
std::atomic<int> g_waiting{0};  // collectives entered and not left

void moved() { g_progress.fetch_add(1, std::memory_order_relaxed); }

// One heartbeat, sent as MPI_BYTE (every rank runs the same binary).
struct Heartbeat {
  int32_t step = 0;
  int32_t waiting = 0;   // inside a collective
  int32_t finished = 0;  // the last heartbeat of a rank that is done
  int32_t unused = 0;
  uint64_t progress = 0;
  char phase[48] = {0};
};

Heartbeat this_rank(bool finished) {
  Heartbeat h;
  h.step = g_step.load(std::memory_order_relaxed);
  h.waiting = g_waiting.load(std::memory_order_relaxed) > 0;
  h.finished = finished;
  h.progress = g_progress.load(std::memory_order_relaxed);
  std::strncpy(h.phase, g_phase.load(std::memory_order_relaxed), sizeof h.phase - 1);
  return h;
}

}  // namespace

WatchdogPhase::WatchdogPhase(const char* name)
    : previous_(g_phase.exchange(name, std::memory_order_relaxed)) {
  moved();
}

WatchdogPhase::~WatchdogPhase() {
  g_phase.store(previous_, std::memory_order_relaxed);
  moved();
}

CollectiveWait::CollectiveWait() {
  g_waiting.fetch_add(1, std::memory_order_relaxed);
  moved();
}

CollectiveWait::~CollectiveWait() {
  g_waiting.fetch_sub(1, std::memory_order_relaxed);
  moved();
}

WatchdogStep::WatchdogStep(int step) : WatchdogPhase("training step") {
  g_step.store(step, std::memory_order_relaxed);
}

void watchdog_tick() { moved(); }

struct Watchdog::Monitor {
  using Clock = std::chrono::steady_clock;

  // What this judge knows of one rank, on its own clock.
  struct Seen {
    Heartbeat last;
    Clock::time_point heard, moved;  // last heartbeat; last one whose progress changed
  };

  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0, world = 1;
  double timeout = 0;
  Clock::duration interval;
  std::vector<Seen> seen;

  // Sends in flight: a small ring per peer, so a peer that stopped receiving
  // costs nothing but skipped heartbeats (never a blocked thread). Slot i of
  // peer r is [r * kSlots + i].
  static constexpr int kSlots = 8;
  std::vector<Heartbeat> outgoing;
  std::vector<MPI_Request> sends;
  Heartbeat incoming;
  MPI_Request receive = MPI_REQUEST_NULL;

  std::mutex mutex;
  std::condition_variable wake;
  bool stop = false;
  std::thread thread;

  Monitor(MPI_Comm dup, int rank_, int world_, double timeout_)
      : comm(dup), rank(rank_), world(world_), timeout(timeout_),
        seen(size_t(world_)), outgoing(size_t(world_) * kSlots),
        sends(size_t(world_) * kSlots, MPI_REQUEST_NULL) {
    interval = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(std::min(1.0, timeout / 10)));
    const Clock::time_point now = Clock::now();
    for (Seen& s : seen) s.heard = s.moved = now;
    post_receive();
    thread = std::thread([this] { run(); });
  }

  ~Monitor() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stop = true;
    }
    wake.notify_all();
    thread.join();
    MPI_Comm_free(&comm);
  }

  // The watchdog must never throw or block the job: MPI return codes are
  // ignored (the communicator returns them instead of aborting; a failed
  // heartbeat is a missed one).
  void post_receive() {
    MPI_Irecv(&incoming, sizeof incoming, MPI_BYTE, MPI_ANY_SOURCE, 0, comm, &receive);
  }

  // To every other rank: each is a judge.
  void send(const Heartbeat& h) {
    for (int peer = 0; peer < world; ++peer) {
      if (peer == rank) continue;
      for (int i = peer * kSlots; i < (peer + 1) * kSlots; ++i) {
        int done = 0;
        MPI_Test(&sends[size_t(i)], &done, MPI_STATUS_IGNORE);
        if (!done) continue;
        outgoing[size_t(i)] = h;
        MPI_Isend(&outgoing[size_t(i)], sizeof h, MPI_BYTE, peer, 0, comm, &sends[size_t(i)]);
        break;
      }
    }
  }

  void observe(int r, const Heartbeat& h, Clock::time_point now) {
    Seen& s = seen[size_t(r)];
    if (h.progress != s.last.progress || h.finished) s.moved = now;
    s.last = h;
    s.heard = now;
  }

  void receive_all() {
    while (receive != MPI_REQUEST_NULL) {
      int done = 0;
      MPI_Status status;
      MPI_Test(&receive, &done, &status);
      if (!done) return;
      observe(status.MPI_SOURCE, incoming, Clock::now());
      post_receive();
    }
  }

  double seconds_since(Clock::time_point t, Clock::time_point now) const {
    return std::chrono::duration<double>(now - t).count();
  }

  // The job is stuck when no rank moved for `timeout` seconds. The rank to
  // name: silent first, then not waiting in a collective, then the one that
  // moved longest ago. Every rank judges; the one that speaks is the lowest
  // rank still speaking (a finished rank has stopped judging), so one line is
  // printed whichever ranks froze.
  void judge() {
    const Clock::time_point now = Clock::now();
    auto silent = [&](int r) { return seconds_since(seen[size_t(r)].heard, now) > timeout; };
    int culprit = -1;
    auto rank_key = [&](int r) {
      return std::make_tuple(!silent(r), bool(seen[size_t(r)].last.waiting), seen[size_t(r)].moved);
    };
    for (int r = 0; r < world; ++r) {
      const Seen& s = seen[size_t(r)];
      if (s.last.finished) continue;
      if (seconds_since(s.moved, now) <= timeout) return;  // progress somewhere
      if (culprit < 0 || rank_key(r) < rank_key(culprit)) culprit = r;
    }
    if (culprit < 0) return;
    for (int r = 0; r < rank; ++r)
      if (!silent(r) && !seen[size_t(r)].last.finished) return;  // a lower rank speaks
    const Seen& s = seen[size_t(culprit)];
    std::fflush(stdout);
    std::fprintf(stderr,
                 "error: rank %d made no progress for %.0f s (last phase: %s, step %d); "
                 "ending the job\n",
                 culprit, seconds_since(s.moved, now), s.last.phase, s.last.step);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }

  void run() {
    std::unique_lock<std::mutex> lock(mutex);
    while (!stop) {
      lock.unlock();
      const Heartbeat mine = this_rank(false);
      observe(rank, mine, Clock::now());
      send(mine);
      receive_all();
      judge();
      lock.lock();
      wake.wait_for(lock, interval, [this] { return stop; });
    }
    lock.unlock();
    finish();
  }

  // The last heartbeat says "finished"; then every request is settled so
  // MPI_Finalize finds none pending. A peer that no longer receives (it
  // finished first) gets its messages cancelled after a short wait.
  void finish() {
    send(this_rank(true));
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(2);
    for (MPI_Request& request : sends) {
      int done = 0;
      while (MPI_Test(&request, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && !done &&
             Clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      if (done) continue;
      MPI_Cancel(&request);
      MPI_Wait(&request, MPI_STATUS_IGNORE);
    }
    if (receive != MPI_REQUEST_NULL) {
      MPI_Cancel(&receive);
      MPI_Wait(&receive, MPI_STATUS_IGNORE);
    }
  }
};

Watchdog::Watchdog(double timeout_seconds) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (timeout_seconds <= 0 || !initialized || finalized) return;
  int rank = 0, world = 1, level = MPI_THREAD_SINGLE;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  if (world <= 1) return;
  MPI_Query_thread(&level);
  if (level != MPI_THREAD_MULTIPLE) {
    if (rank == 0)
      std::printf("note: --rank-timeout: this MPI library does not provide "
                  "MPI_THREAD_MULTIPLE; running without the watchdog\n");
    return;
  }
  MPI_Comm dup = MPI_COMM_NULL;
  if (MPI_Comm_dup(MPI_COMM_WORLD, &dup) != MPI_SUCCESS) return;
  monitor_.reset(new Monitor(dup, rank, world, timeout_seconds));
}

Watchdog::~Watchdog() = default;

}  // namespace polaris
