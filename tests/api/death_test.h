// death_test.h — running a memory error in a child process and checking how it ends: the
// error first, then the program goes on; hakmem must abort with its exact message.
// Used by test_misuse.cpp, test_canary.cpp and test_prof.cpp (Criterion tests, C++).
#ifndef HAKMEM_TESTS_DEATH_TEST_H
#define HAKMEM_TESTS_DEATH_TEST_H

#include <criterion/criterion.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

namespace death_test {

// Runs fn in a child with stderr captured; returns it, and how the child ended in *status. A
// child whose fn returns exits with 0: the error went unnoticed.
template <class Fn>
std::string run_child(Fn fn, int* status) {
  int fds[2];
  cr_assert_eq(pipe(fds), 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    fn();
    _exit(0);
  }
  close(fds[1]);
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, size_t(n));
  close(fds[0]);
  waitpid(pid, status, 0);
  return out;
}

// fn must end in abort() with a "hakmem: " line containing message.
template <class Fn>
void expect_abort(const char* what, const char* message, Fn fn) {
  int status = 0;
  std::string err = run_child(fn, &status);
  cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "%s: expected abort(), child %s %d; stderr: %s", what,
            WIFSIGNALED(status) ? "got signal" : "exited with", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
            err.c_str());
  cr_assert(err.find("hakmem: ") != std::string::npos && err.find(message) != std::string::npos,
            "%s: expected a message containing \"%s\", got: %s", what, message, err.c_str());
}

}  // namespace death_test

#endif  // HAKMEM_TESTS_DEATH_TEST_H
