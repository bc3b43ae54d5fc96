// fork_locks.cpp — the page of locks fork() holds (see fork_locks.h).
#include "fork_locks.h"

namespace hak {

constinit ForkLocks g_fork_locks;  // constant-initialised: usable before any constructor runs

}  // namespace hak
