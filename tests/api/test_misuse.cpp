// Misuse is reported with one exact message and abort(): each case runs in a child process
// whose stderr is captured, and the test asserts SIGABRT and the message.
//   both variants: double free and interior pointer of span blocks, a free into a SuperSlab
//                  slot that holds no slab, a wild pointer inside a SuperSlab header page
//   debug variant: double free and interior pointer of Tiny/Mid blocks (release detects
//                  these later or not at all: see docs/TUNING.md and issue #5)
#include <criterion/criterion.h>

// Every case misuses the API on purpose.
#pragma GCC diagnostic ignored "-Wuse-after-free"
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "hakmem_build_flags.h"
#include "region_map.h"
#include "superslab.h"

namespace {

void escape(void* p) { asm volatile("" : : "g"(p) : "memory"); }

// Runs fn in a child; returns its stderr and how it ended.
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
    _exit(0);  // no abort: the misuse went unnoticed
  }
  close(fds[1]);
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0) out.append(buf, size_t(n));
  close(fds[0]);
  waitpid(pid, status, 0);
  return out;
}

template <class Fn>
void expect_abort(const char* what, const char* message, Fn fn) {
  int status = 0;
  std::string err = run_child(fn, &status);
  cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "%s: expected abort(), child %s %d; stderr: %s",
            what, WIFSIGNALED(status) ? "got signal" : "exited with", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
            err.c_str());
  cr_assert(err.find("hakmem: ") != std::string::npos && err.find(message) != std::string::npos,
            "%s: expected a message containing \"%s\", got: %s", what, message, err.c_str());
}

}  // namespace

Test(misuse, double_free_of_a_span_block) {
  expect_abort("span double free", "double free of a span block", [] {
    void* p = malloc(100000);
    escape(p);
    free(p);
    free(p);
  });
}

Test(misuse, free_of_a_pointer_inside_a_span_block) {
  expect_abort("span interior pointer", "invalid pointer (no span header", [] {
    char* p = static_cast<char*>(malloc(100000));
    memset(p, 0xAB, 100000);
    free(p + 4096);
  });
}

Test(misuse, free_into_a_superslab_slot_that_holds_no_slab) {
  expect_abort("free into an unassigned slot", "in no live slab", [] {
    void* p = malloc(32);
    escape(p);
    // Another 64 KiB unit of the same SuperSlab that is not assigned to any class.
    char* ss = reinterpret_cast<char*>(hak::superslab_of(p));
    for (int i = 1; i < hak::kSlabsPerSuperSlab; ++i) {
      char* q = ss + size_t(i) * hak::kSlabSize + 4096;
      if (hak::region_map_lookup(q) == hak::kRegionFreeSlab) free(q);
    }
    _exit(3);  // every slot in use: cannot run this case
  });
}

Test(misuse, double_free_of_a_tiny_block) {
  if (!hak::kDebug) cr_skip_test("release detects Tiny double frees only in the debug variant");
  expect_abort("tiny double free", "double free (block of size class", [] {
    void* p = malloc(32);
    escape(p);
    free(p);
    free(p);
  });
}

Test(misuse, double_free_of_a_mid_block_after_others) {
  if (!hak::kDebug) cr_skip_test("debug variant only");
  expect_abort("mid double free", "double free (block of size class", [] {
    void* a = malloc(3000);
    void* b = malloc(3000);
    escape(a);
    escape(b);
    free(a);
    free(b);
    free(a);
  });
}

Test(misuse, free_of_a_pointer_inside_a_tiny_block) {
  if (!hak::kDebug) cr_skip_test("debug variant only");
  expect_abort("tiny interior pointer", "not at its start", [] {
    char* p = static_cast<char*>(malloc(64));
    escape(p);
    free(p + 16);
  });
}

Test(misuse, realloc_of_a_freed_span_block) {
  expect_abort("realloc after free", "realloc(", [] {
    void* p = malloc(200000);
    escape(p);
    free(p);
    void* q = realloc(p, 300000);
    escape(q);
  });
}
