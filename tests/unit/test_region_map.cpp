// test_region_map.cpp — the region map (region_map.h): a class or kind per 64 KiB of user address
// space (and in the flat form where a slab run starts), in its flat form and in its two-level
// fallback.
//
// The test binary's malloc is hakmem (libhakmem.a is linked in), so the map is set up by the
// first allocation, long before a test runs, and region_map_force_two_level() comes too late
// for any test body. The two-level form is therefore checked in a child process: the test
// re-executes this binary with HAKMEM_UNIT_REGION_MAP=<mode> in a clean environment, where
//   mode "force":  a .preinit_array hook (which runs before any shared library's constructor,
//                  hence before the first malloc) calls region_map_force_two_level();
//   mode "rlimit": the child runs under RLIMIT_AS = 1 GiB, so the 4 GiB reservation is refused
//                  and hakmem falls back on its own — the real-world path.
// In the child, a constructor runs child_checks() and _exit()s before Criterion's main.
#include <criterion/criterion.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <valgrind/valgrind.h>

#include "hakmem.h"
#include "canary.h"
#include "region_map.h"
#include "size_class.h"
#include "superslab.h"
#include "seed_heap.h"

extern "C" void* __libc_malloc(size_t);
extern "C" void __libc_free(void*);

using namespace hak;

// These tests follow blocks into their runs: the release variant's seed heap, which serves each
// class's first blocks (seed_heap.h; tested in test_seed_heap.cpp), is off in this program.
__attribute__((constructor)) static void seed_off() { seed_disable(); }

namespace {

constexpr const char kModeVar[] = "HAKMEM_UNIT_REGION_MAP=";

const char* child_mode(char** envp) {
  if (envp == nullptr) return nullptr;
  for (char** e = envp; *e != nullptr; ++e)
    if (strncmp(*e, kModeVar, sizeof kModeVar - 1) == 0) return *e + sizeof kModeVar - 1;
  return nullptr;
}

void* at(uintptr_t a) { return reinterpret_cast<void*>(a); }

// An address range nothing maps (the map only stores bytes for it).
constexpr uintptr_t kFarAway = 0x5a5a00000000ull;
// The two-level form's leaves cover 2^16 entries × 64 KiB = 4 GiB each.
constexpr uintptr_t kLeafSpan = uintptr_t(1) << 32;

// Checks that hold in either form. Returns nullptr or what went wrong (a static string).
const char* check_set_and_lookup() {
  static char why[256];
  // Three units in the middle of nowhere.
  if (!region_map_set(at(kFarAway), 3 * kRegionUnit, 17)) return "region_map_set failed";
  for (uintptr_t a = kFarAway; a < kFarAway + 3 * kRegionUnit; a += 4096) {
    if (region_map_lookup(at(a)) != 17) {
      snprintf(why, sizeof why, "lookup(%#lx) = %u after set to 17", (unsigned long)a, region_map_lookup(at(a)));
      return why;
    }
  }
  if (region_map_lookup(at(kFarAway - 1)) != kRegionNone) return "the unit before the set range changed";
  if (region_map_lookup(at(kFarAway + 3 * kRegionUnit)) != kRegionNone) return "the unit after the set range changed";
  // Overwrite the middle unit only.
  region_map_set(at(kFarAway + kRegionUnit), kRegionUnit, kRegionSpan);
  if (region_map_lookup(at(kFarAway + kRegionUnit + 123)) != kRegionSpan) return "overwrite of one unit lost";
  if (region_map_lookup(at(kFarAway)) != 17 || region_map_lookup(at(kFarAway + 2 * kRegionUnit)) != 17)
    return "overwrite of one unit changed its neighbours";
  region_map_set(at(kFarAway), 3 * kRegionUnit, kRegionNone);
  for (uintptr_t a = kFarAway; a < kFarAway + 3 * kRegionUnit; a += kRegionUnit)
    if (region_map_lookup(at(a)) != kRegionNone) return "clearing a range did not read back as 0";

  // A range that straddles a two-level leaf boundary (harmless in the flat form).
  uintptr_t edge = (kFarAway + 2 * kLeafSpan) & ~(kLeafSpan - 1);
  if (!region_map_set(at(edge - 2 * kRegionUnit), 4 * kRegionUnit, kRegionFreeSlab)) return "set across a leaf edge failed";
  for (int i = -2; i < 2; ++i)
    if (region_map_lookup(at(edge + i * intptr_t(kRegionUnit))) != kRegionFreeSlab) return "lookup across a leaf edge";
  if (region_map_lookup(at(edge + 2 * kRegionUnit)) != kRegionNone) return "set across a leaf edge spilled over";
  region_map_set(at(edge - 2 * kRegionUnit), 4 * kRegionUnit, kRegionNone);

  // The very last unit of the 47-bit space, and the guard above it.
  uintptr_t top = (uintptr_t(1) << kAddressBits) - kRegionUnit;
  if (!region_map_set(at(top), kRegionUnit, 9)) return "set of the last unit failed";
  if (region_map_lookup(at(top + kRegionUnit - 1)) != 9) return "lookup of the last byte of user space";
  if (region_map_lookup(at(top + kRegionUnit)) != kRegionNone) return "an address >= 2^47 is not 'not ours'";
  region_map_set(at(top), kRegionUnit, kRegionNone);

  // Never-set addresses read as "not ours" and never fault (a fresh leaf / untouched page).
  uintptr_t probes[] = {0, 4096, kFarAway + 77 * kLeafSpan, (uintptr_t(1) << 46) + 12345, ~uintptr_t(0),
                        uintptr_t(1) << 47, uintptr_t(1) << 63};
  for (uintptr_t a : probes)
    if (region_map_lookup(at(a)) != kRegionNone) {
      snprintf(why, sizeof why, "never-set address %#lx reads %u", (unsigned long)a, region_map_lookup(at(a)));
      return why;
    }
  return nullptr;
}

// hakmem's own memory is classified as the free path needs it; foreign memory is not ours.
const char* check_allocator_classification() {
  static char why[256];
  static void* blocks[64];
  static const size_t sizes[] = {1, 8, 16, 100, 256, 1000, 1024, 1025, 4096, 20000, 32768};
  int n = 0;
  for (size_t s : sizes) {
    void* p = hak_malloc(s);
    blocks[n++] = p;
    if (p == nullptr) return "hak_malloc failed";
    // The class of s and the secure variant's canary (canary.h); a span past the classes.
    uint8_t want = s + kCanaryTail <= kMidMax ? uint8_t(size_to_class(s + kCanaryTail)) : kRegionSpan;
    if (region_map_lookup(p) != want) {
      snprintf(why, sizeof why, "block of %zu B: lookup %u, want class %u", s, region_map_lookup(p), want);
      return why;
    }
    if (region_map_lookup(static_cast<char*>(p) + s - 1) != want) return "last byte of a block misclassified";
  }
  static const size_t spans[] = {32769, 200000, kRegionUnit * 20, kRegionUnit * 50 + 1};
  for (size_t s : spans) {
    char* p = static_cast<char*>(hak_malloc(s));
    blocks[n++] = p;
    if (p == nullptr) return "hak_malloc (span) failed";
    if (region_map_lookup(p) != kRegionSpan || region_map_lookup(p + s - 1) != kRegionSpan) {
      snprintf(why, sizeof why, "span of %zu B: lookup %u, want kRegionSpan", s, region_map_lookup(p));
      return why;
    }
  }
  int local = 0;
  static int in_data = 0;
  if (region_map_lookup(&local) != kRegionNone) return "a stack address is classified as hakmem's";
  if (region_map_lookup(&in_data) != kRegionNone) return "a static address is classified as hakmem's";
  void* g = __libc_malloc(100);
  uint8_t gid = region_map_lookup(g);
  __libc_free(g);
  if (gid != kRegionNone) return "a glibc block is classified as hakmem's";
  for (int i = 0; i < n; ++i) hak_free(blocks[i]);
  // A Large mapping that went back to the OS is unregistered.
  char* big = static_cast<char*>(hak_malloc(40u << 20));  // above the Large cache's entry limit
  if (big == nullptr || region_map_lookup(big) != kRegionSpan) return "40 MiB block not a span";
  hak_free(big);
  hak_trim();
  if (region_map_lookup(big) != kRegionNone) return "an unmapped Large mapping still reads as hakmem's";
  return nullptr;
}

int child_checks(const char* mode) {
  const char* fail = nullptr;
  char why[256];
  hak_free(hak_malloc(1));  // makes sure hakmem is initialised
  if (region_map_is_flat()) {
    fail = "the flat map is in use (want the two-level form)";
  } else if (!region_map_init(detail::kTables.start_mul, kStartTablesBytes) || region_map_is_flat()) {
    fail = "region_map_init(detail::kTables.start_mul, kStartTablesBytes) again changed the form";
  } else if (!(fail = check_set_and_lookup())) {
    fail = check_allocator_classification();
  }
  if (fail) {
    snprintf(why, sizeof why, "region map child (%s): %s\n", mode, fail);
    if (write(2, why, strlen(why)) < 0) {}
    return 1;
  }
  return 0;
}

// Runs before any shared library's constructor, hence before the first malloc.
void preinit(int, char**, char** envp) {
  const char* mode = child_mode(envp);
  if (mode != nullptr && strcmp(mode, "force") == 0) region_map_force_two_level();
}
__attribute__((section(".preinit_array"), used)) void (*const g_preinit)(int, char**, char**) = preinit;

__attribute__((constructor)) void child_entry() {
  const char* mode = child_mode(environ);
  if (mode != nullptr) _exit(child_checks(mode));
}

// Re-executes this binary in child mode; returns its exit status (or 128 + signal).
int run_child(const char* mode, rlim_t as_limit) {
  static char var[64];
  snprintf(var, sizeof var, "%s%s", kModeVar, mode);
  char* envp[] = {var, nullptr};
  char arg0[] = "test_region_map_child";
  char* argv[] = {arg0, nullptr};
  static char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  cr_assert_gt(n, 0, "readlink /proc/self/exe");
  exe[n] = '\0';
  pid_t pid = fork();
  cr_assert_geq(pid, 0, "fork failed");
  if (pid == 0) {
    if (as_limit != 0) {
      struct rlimit rl = {as_limit, as_limit};
      if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(90);
    }
    execve(exe, argv, envp);
    _exit(91);
  }
  int status = 0;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

bool strict_overcommit() {
  FILE* f = fopen("/proc/sys/vm/overcommit_memory", "r");
  if (f == nullptr) return false;
  int v = 0;
  bool strict = fscanf(f, "%d", &v) == 1 && v == 2;
  fclose(f);
  return strict;
}

}  // namespace

// Makes sure hakmem has initialised itself (under valgrind, the binary's malloc may be
// valgrind's, and then nothing has called into hakmem yet).
void ensure_hakmem_ready() { hak_free(hak_malloc(1)); }

Test(region_map, flat_form_is_in_use_on_this_machine) {
  ensure_hakmem_ready();
  if (RUNNING_ON_VALGRIND) cr_skip_test("valgrind refuses the 4 GiB reservation; the two-level form is in use");
  struct rlimit rl;
  getrlimit(RLIMIT_AS, &rl);
  if (strict_overcommit() || rl.rlim_cur != RLIM_INFINITY)
    cr_skip_test("strict overcommit or RLIMIT_AS: the two-level form is expected here");
  cr_assert(region_map_is_flat(), "the 4 GiB reservation should succeed with overcommit allowed");
  cr_assert_not_null(detail::g_region.base);
}

Test(region_map, init_is_idempotent_and_a_late_force_changes_nothing) {
  ensure_hakmem_ready();
  bool flat = region_map_is_flat();
  uint8_t* map = detail::g_region.base;
  cr_assert(region_map_init(detail::kTables.start_mul, kStartTablesBytes));
  region_map_force_two_level();  // too late: documented as "before region_map_init"
  cr_assert(region_map_init(detail::kTables.start_mul, kStartTablesBytes));
  cr_assert_eq(region_map_is_flat(), flat, "a second init must not switch forms");
  cr_assert_eq(detail::g_region.base, map, "a second init must not replace the live map");
  void* p = hak_malloc(48);
  cr_assert_eq(region_map_lookup(p), size_to_class(48 + kCanaryTail));
  hak_free(p);
}

Test(region_map, set_and_lookup_in_the_active_form) {
  const char* fail = check_set_and_lookup();
  cr_assert_null(fail, "%s (flat form: %d)", fail ? fail : "", int(region_map_is_flat()));
}

Test(region_map, allocator_memory_is_classified) {
  const char* fail = check_allocator_classification();
  cr_assert_null(fail, "%s", fail ? fail : "");
}

Test(region_map, a_run_unit_gives_each_address_its_offset_in_the_run) {
  ensure_hakmem_ready();
  if (!region_map_is_flat()) cr_skip_test("the run starts are kept by the flat form only");
  // A 2 MiB-aligned range of address space nobody uses (reserved, never touched), marked as
  // runs: the map does not look at the memory.
  const size_t span = 4 * kSuperSlabSize;
  char* raw = static_cast<char*>(mmap(nullptr, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  cr_assert_neq(raw, MAP_FAILED);
  char* ss = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + kSuperSlabSize - 1) & ~(kSuperSlabSize - 1));
  auto offset_of = [](const char* p) {
    const uint8_t* e = detail::g_region.base + (reinterpret_cast<uintptr_t>(p) >> kRegionShift) * kFlatStride;
    return region_run_offset(e, reinterpret_cast<uintptr_t>(p));
  };
  // Runs of 1 to 4 slabs, at the SuperSlab's first slab (the run starts after the 4 KiB
  // header) and at later slabs.
  for (int k = 1; k <= 4; ++k) {
    for (int slab : {0, 1, 5, 32 - k}) {
      char* unit = ss + size_t(slab) * kSlabSize;
      char* start = unit + (slab == 0 ? kSuperSlabHeader : 0);
      cr_assert(region_map_set_run(unit, size_t(k) * kSlabSize, 7, start));
      for (size_t off = 0; start + off < unit + size_t(k) * kSlabSize; off += 16) {
        cr_assert_eq(region_map_lookup(start + off), 7);
        if (offset_of(start + off) != off)
          cr_assert(false, "run of %d slabs at slab %d: offset %zu reads %u", k, slab, off, offset_of(start + off));
      }
      // The SuperSlab's header is before the run: its offsets are past any block.
      if (slab == 0)
        for (size_t h = 0; h < kSuperSlabHeader; h += 16) cr_assert_geq(offset_of(unit + h), uint32_t(kRunWindow - kSuperSlabHeader));
      cr_assert(region_map_set(unit, size_t(k) * kSlabSize, kRegionNone));
    }
  }
  munmap(raw, span);
  // And in the allocator's own runs: every block of a few classes starts where the map says.
  for (size_t n : {16, 48, 272, 1152, 1568, 3008, 4736, 32768}) {
    void* p = hak_malloc(n - kCanaryTail);
    const Slab* s = slab_of_block(p);
    cr_assert_eq(offset_of(static_cast<char*>(p)), uint32_t(static_cast<char*>(p) - run_data_start(s)), "%zu-byte block", n);
    hak_free(p);
  }
}

Test(region_map, two_level_form_forced_before_init) {
  int rc = run_child("force", 0);
  cr_assert_eq(rc, 0, "child with region_map_force_two_level() failed (exit %d; its message is above)", rc);
}

Test(region_map, two_level_form_when_the_reservation_is_refused) {
  if (RUNNING_ON_VALGRIND) cr_skip_test("valgrind itself needs more than the RLIMIT_AS this test sets");
  int rc = run_child("rlimit", rlim_t(1) << 30);  // 1 GiB < the 4 GiB flat reservation
  cr_assert_eq(rc, 0, "child under RLIMIT_AS = 1 GiB failed (exit %d; its message is above)", rc);
}
