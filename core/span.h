// span.h — the 16-byte header in front of every block that is not in a size class:
// page-arena spans (≤ 1 MiB) and Large mappings. 16 bytes keep the block 16-byte aligned.
//
//   span start                         block (returned pointer, aligned as asked)
//   ├──────── offset ─────────┬────────┬───────────────────────────────┐
//   │ (alignment padding)     │ header │ usable bytes ...              │
//   └─────────────────────────┴────────┴───────────────────────────────┘
//                                      └─ span_bytes - offset ─────────┘
#ifndef HAKMEM_SPAN_H
#define HAKMEM_SPAN_H

#include <stddef.h>
#include <stdint.h>

#include "hakmem_build_flags.h"

namespace hak {

inline constexpr uint32_t kSpanMagicLive = 0x5350414eu;   // "SPAN"
inline constexpr uint32_t kSpanMagicFreed = 0x44454144u;  // "DEAD": written on free
// A live block the heap profiler sampled (prof.h): its span starts with the sample's record,
// and free tells the profiler. Every other use treats it as kSpanMagicLive.
inline constexpr uint32_t kSpanMagicSampled = 0x534d504cu;  // "SMPL"

struct SpanHeader {
  uint32_t magic;
  uint32_t offset : 31;  // block - span start (≤ the largest alignment, 1 GiB, plus 16)
  uint32_t array : 1;    // secure and debug variants: allocated by operator new[]
  uint64_t span_bytes;   // whole span (page-arena span or Large mapping)
};
static_assert(sizeof(SpanHeader) == 16, "the span header is 16 bytes");

HAK_FAST_PATH SpanHeader* span_header_of(const void* block) {
  return reinterpret_cast<SpanHeader*>(const_cast<char*>(static_cast<const char*>(block)) - sizeof(SpanHeader));
}
HAK_FAST_PATH bool span_is_live(const SpanHeader* h) {
  return h->magic == kSpanMagicLive || h->magic == kSpanMagicSampled;
}
HAK_FAST_PATH size_t span_usable(const SpanHeader* h) { return size_t(h->span_bytes - h->offset); }

}  // namespace hak

#endif  // HAKMEM_SPAN_H
