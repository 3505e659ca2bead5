// OpenMP's defaults, chosen before the OpenMP runtime starts.
//
// libgomp reads OMP_NUM_THREADS and OMP_WAIT_POLICY once, when the program
// loads (before main), so setting them in main is too late. Each program's
// main calls configure_openmp(argv) first: when the user set neither, it
// sets
//   OMP_NUM_THREADS  the cores this process may run on: its CPU affinity
//                    (taskset, mpirun's binding), capped by a cgroup CPU
//                    quota (containers), shared among the ranks mpirun
//                    started on this machine when they are not bound;
//   OMP_WAIT_POLICY  PASSIVE: idle threads sleep instead of spinning, which
//                    on a machine whose cores are shared is the difference
//                    between a few percent and several times slower;
// and executes the program again (same pid, same arguments) so the runtime
// starts with them. A variable the user set is left as it is.
#pragma once

namespace polaris {

// The cores this process may run on (see above); at least 1.
int usable_cores();

// Sets the defaults above and re-executes the program once when one was
// missing; returns when nothing needs to change (or re-execution failed:
// then the runtime's own defaults stay).
void configure_openmp(char** argv);

}  // namespace polaris
