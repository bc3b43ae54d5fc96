// diag.h — diagnostics that never allocate: a fixed stack buffer, a tiny formatter and write(2).
//
// hak_fatal prints "hakmem: <message>\n" and aborts; its messages are exact and stable (tests
// assert them). HAK_ASSERT is a debug-variant check that compiles to nothing in release.
#ifndef HAKMEM_DIAG_H
#define HAKMEM_DIAG_H

#include <stdarg.h>
#include <stddef.h>

#include "hakmem_build_flags.h"

namespace hak {

// Formats into buf (always NUL-terminated). Supports %s %d %u %ld %lu %zu %zx %x %lx %p %%,
// with an optional '-' flag and width ("%-8s", "%12lu").
size_t diag_vformat(char* buf, size_t cap, const char* fmt, va_list ap);
size_t diag_format(char* buf, size_t cap, const char* fmt, ...) __attribute__((format(printf, 3, 4)));

// Prints "hakmem: " + the formatted message + newline to stderr.
void diag_print(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// Prints "hakmem: " + the message and aborts the process.
[[noreturn]] void hak_fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2), cold, noinline));

}  // namespace hak

#define HAK_ASSERT(cond)                                                                    \
  do {                                                                                      \
    if constexpr (::hak::kDebug) {                                                          \
      if (HAK_UNLIKELY(!(cond))) ::hak::hak_fatal("assertion failed: %s (%s:%d)", #cond,    \
                                                  __FILE__, __LINE__);                      \
    }                                                                                       \
  } while (0)

#endif  // HAKMEM_DIAG_H
