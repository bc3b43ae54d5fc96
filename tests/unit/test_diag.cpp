// test_diag.cpp — the non-allocating formatter and fatal-error path (diag.h).
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/types.h>

#include "diag.h"

using namespace hak;

#define FMT_EQ(expect, ...)                                                                     \
  do {                                                                                          \
    char buf_[128];                                                                             \
    size_t n_ = diag_format(buf_, sizeof buf_, __VA_ARGS__);                                    \
    cr_assert_str_eq(buf_, expect);                                                             \
    cr_assert_eq(n_, strlen(expect), "returned %zu for \"%s\"", n_, expect);                    \
  } while (0)

Test(diag, plain_text_and_percent) {
  FMT_EQ("", "%s", "");
  FMT_EQ("hello", "hello");
  FMT_EQ("100%", "100%%");
  FMT_EQ("a%%b", "a%%%%b");
}

Test(diag, strings) {
  FMT_EQ("[abc]", "[%s]", "abc");
  const char* volatile null_str = nullptr;  // volatile: keeps GCC's -Wformat-overflow quiet
  FMT_EQ("x(null)y", "x%sy", null_str);
  FMT_EQ("one two", "%s %s", "one", "two");
}

Test(diag, signed_integers) {
  FMT_EQ("0", "%d", 0);
  FMT_EQ("42", "%d", 42);
  FMT_EQ("-7", "%d", -7);
  FMT_EQ("-2147483648", "%d", INT_MIN);
  FMT_EQ("2147483647", "%d", INT_MAX);
  FMT_EQ("-1234567890123", "%ld", -1234567890123L);
  FMT_EQ("9223372036854775807", "%ld", LONG_MAX);
  FMT_EQ("-5", "%zd", ssize_t(-5));
}

Test(diag, unsigned_integers) {
  FMT_EQ("0", "%u", 0u);
  FMT_EQ("4294967295", "%u", UINT_MAX);
  FMT_EQ("18446744073709551615", "%lu", ULONG_MAX);
  FMT_EQ("123456789012", "%zu", size_t(123456789012ull));
}

Test(diag, hex_and_pointers_carry_0x) {
  // This formatter prefixes every hexadecimal conversion with 0x (unlike printf's %x).
  FMT_EQ("0x0", "%x", 0u);
  FMT_EQ("0xdeadbeef", "%x", 0xdeadbeefu);
  FMT_EQ("0xffffffffffffffff", "%lx", ~0ul);
  FMT_EQ("0x200000", "%zx", size_t(2 * 1024 * 1024));
  FMT_EQ("0x7fff12345670", "%p", reinterpret_cast<void*>(uintptr_t(0x7fff12345670ull)));
  FMT_EQ("0x0", "%p", static_cast<void*>(nullptr));
}

Test(diag, mixed_message) {
  FMT_EQ("slab 0x1000 (class 7) used 3 + free -1 != capacity 4096",
         "slab %p (class %u) used %u + free %d != capacity %zu", reinterpret_cast<void*>(uintptr_t(0x1000)), 7u, 3u,
         -1, size_t(4096));
}

Test(diag, unknown_conversions_are_copied_and_a_trailing_percent_is_dropped) {
  char buf[64];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat"
#pragma GCC diagnostic ignored "-Wformat-extra-args"
  size_t n = diag_format(buf, sizeof buf, "a%qb");
  cr_assert_str_eq(buf, "a%qb");
  cr_assert_eq(n, 4u);
  n = diag_format(buf, sizeof buf, "end%");
#pragma GCC diagnostic pop
  cr_assert_str_eq(buf, "end");
  cr_assert_eq(n, 3u);
}

Test(diag, truncates_and_always_terminates) {
  char buf[8];
  memset(buf, 'X', sizeof buf);
  size_t n = diag_format(buf, 4, "abcdef");
  cr_assert_str_eq(buf, "abc", "got \"%s\"", buf);
  cr_assert_eq(n, 3u, "returns the length written, got %zu", n);
  cr_assert_eq(buf[4], 'X', "wrote past cap");

  memset(buf, 'X', sizeof buf);
  n = diag_format(buf, 6, "%d", 1234567);
  cr_assert_str_eq(buf, "12345");
  cr_assert_eq(n, 5u);
  cr_assert_eq(buf[6], 'X', "wrote past cap");

  memset(buf, 'X', sizeof buf);
  n = diag_format(buf, 1, "abc");
  cr_assert_eq(buf[0], '\0');
  cr_assert_eq(buf[1], 'X');
  cr_assert_eq(n, 0u);

  memset(buf, 'X', sizeof buf);
  n = diag_format(buf, 0, "abc");
  cr_assert_eq(n, 0u);
  cr_assert_eq(buf[0], 'X', "cap 0 must not write");

  // Exactly fitting: 7 characters + NUL in 8 bytes.
  n = diag_format(buf, sizeof buf, "%s", "1234567");
  cr_assert_str_eq(buf, "1234567");
  cr_assert_eq(n, 7u);
}

Test(diag, print_prefixes_and_ends_the_line, .init = cr_redirect_stderr) {
  diag_print("value %d of %s", 3, "x");
  fflush(stderr);
  cr_assert_stderr_eq_str("hakmem: value 3 of x\n");
}

Test(diag, print_truncates_long_messages_within_its_buffer, .init = cr_redirect_stderr) {
  static char big[2048];
  memset(big, 'a', sizeof big - 1);
  diag_print("%s", big);
  fflush(stderr);
  FILE* f = cr_get_redirected_stderr();
  static char got[4096];
  size_t n = fread(got, 1, sizeof got, f);
  cr_assert_gt(n, 100u);
  cr_assert_lt(n, 1024u, "a long message must be cut to the fixed buffer, got %zu bytes", n);
  cr_assert_eq(memcmp(got, "hakmem: aaaa", 12), 0);
  cr_assert_eq(got[n - 1], '\n', "the line must still end with a newline");
}

Test(diag, fatal_prints_and_aborts, .signal = SIGABRT, .init = cr_redirect_stderr) {
  hak_fatal("free(%p): double free", reinterpret_cast<void*>(uintptr_t(0x10)));
}

Test(diag, assert_is_active_only_in_debug, .init = cr_redirect_stderr) {
  int evaluated = 0;
  if constexpr (kDebug) {
    HAK_ASSERT(++evaluated == 1);  // passes
    cr_assert_eq(evaluated, 1, "debug: HAK_ASSERT evaluates its condition");
  } else {
    HAK_ASSERT(++evaluated == 5);  // compiled out: never evaluated, never fails
    cr_assert_eq(evaluated, 0, "release: HAK_ASSERT must compile to nothing");
  }
}

#if !HAKMEM_BUILD_RELEASE  // HAK_ASSERT is compiled out of release builds
Test(diag, failing_assert_aborts_in_debug, .signal = SIGABRT, .init = cr_redirect_stderr) {
  volatile int x = 1;
  HAK_ASSERT(x == 2);
}
#endif
