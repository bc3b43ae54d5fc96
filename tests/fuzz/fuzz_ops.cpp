// fuzz_ops.cpp — libFuzzer target (issue 5, "Faults"): fuzzer bytes decoded into the same
// operation sequence as the differential test (tests/api/diff_model.h: every C and C++
// allocation call, checked against the model of live blocks), bounded to 64 live blocks and
// 1 MiB per block. Built with clang++ -fsanitize=fuzzer against hakmem's core objects
// (tests/fuzz/fuzz.mk); hakmem's malloc is the process's malloc, libFuzzer's own included.
// No AddressSanitizer: it would replace malloc.
//
// Input layout: byte 0 chooses where the blocks left at the end are freed (bit 0: on a second
// thread, so they are remote frees); then ops, 1-5 bytes each (diff::decode_op). A model
// check failure prints what differed and aborts (libFuzzer saves the input as a crash).
//
//   out/<v>/fuzz/fuzz_ops -max_total_time=60 CORPUS_DIR     # explore
//   out/<v>/fuzz/fuzz_ops crash-<sha1>                       # replay a finding
// FUZZ_SABOTAGE=1 corrupts a live block before the final check (every input with a live
// block then crashes: proof that the target reports corruption).
#include <stdio.h>
#include <stdlib.h>

#include <thread>

#include "../api/diff_model.h"

namespace {

constexpr size_t kMaxLive = 64;
constexpr size_t kMaxSize = 1u << 20;
constexpr size_t kMaxBytes = 16u << 20;

[[noreturn]] void report(const diff::Model& m, const char* where) {
  fprintf(stderr, "fuzz_ops: model check failed (%s): %s\n", where, m.error());
  fflush(stderr);
  abort();
}

bool g_sabotage = getenv("FUZZ_SABOTAGE") != nullptr;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  uint8_t mode = data[0];
  ++data;
  --size;
  diff::Model m(kMaxLive, kMaxBytes, 0x5eed0000u + mode);
  while (size > 0) {
    diff::Op op = diff::decode_op(data, size, kMaxSize);
    if (!m.apply(op)) report(m, diff::op_name(op.type));
  }
  if (g_sabotage) m.sabotage(0);
  if (!m.check_all()) report(m, "final check");
  if (mode & 1) {
    bool ok = true;
    std::thread t([&] { ok = m.free_all(); });  // remote frees
    t.join();
    if (!ok) report(m, "free on another thread");
  } else if (!m.free_all()) {
    report(m, "final free");
  }
  return 0;
}
