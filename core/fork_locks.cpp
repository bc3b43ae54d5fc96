// fork_locks.cpp — the page of locks fork() holds (see fork_locks.h).
#include "fork_locks.h"

namespace hak {

// Constant-initialised (all zero): usable before any constructor runs. In .lbss, after the
// library's small globals, which then share the pages of its .data instead of starting on a
// page of their own after this one (docs/BENCHMARKS.md, "Short processes").
__attribute__((section(".lbss.hakmem"))) constinit ForkLocks g_fork_locks;

}  // namespace hak
