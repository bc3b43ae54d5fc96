// canary.cpp — the reports of the secure variant's block canaries (canary.h).
#include "canary.h"

namespace hak {

void canary_report(const void* b, size_t bs, const char* op) {
  const unsigned char* c = static_cast<const unsigned char*>(b);
  const uint64_t v = canary_word();
  const size_t gap = canary_gap(b, bs);
  if (gap == 0)
    hak_fatal("%s(%p): heap buffer overflow: the last four bytes of the %zu-byte block (its size record, after the "
              "canary) were overwritten",
              op, b, bs);
  const size_t n = bs - gap;
  size_t at = n;
  while (at < bs - 4 && at < n + kCanaryBytes && c[at] == uint8_t(v >> (8 * (at - n)))) ++at;
  hak_fatal("%s(%p): heap buffer overflow: %zu bytes asked for, the %zu-byte block was written past them at +%zu "
            "(found %x)",
            op, b, n, bs, at, unsigned(c[at]));
}

}  // namespace hak
