// options.cpp — the option table (see options.h).
#include "options.h"

#include "decay.h"
#include "diag.h"
#include "hakmem_build_flags.h"
#include "os.h"

namespace hak {
namespace {

Options g_options{};
bool g_ready = false;

struct OptionInfo {
  const char* name;
  const char* description;
  bool debug_only;
  uint64_t* value;  // as read (`def` when unset)
  uint64_t def;
};

uint64_t g_raw[10];
const OptionInfo kTable[] = {
    {"HAKMEM_STATS", "print the statistics table at exit (1 = on)", false, &g_raw[0], 0},
    {"HAKMEM_VERBOSE", "print the options and build flags at start-up (1 = on)", false, &g_raw[1], 0},
    {"HAKMEM_FAULT_MMAP", "fault injection: the N-th and later mmaps fail (debug variant)", true, &g_raw[2], 0},
    {"HAKMEM_CHECK", "check the whole heap every N-th slow-path call of a thread (debug variant)", true, &g_raw[3], 0},
    {"HAKMEM_DECAY_THREAD", "return idle memory from a background thread (0 = never start it)", false, &g_raw[4], 1},
    {"HAKMEM_GUARD", "guard one allocation in N of at most 256 KiB between inaccessible pages (0 = off)", false, &g_raw[5],
     kGuardDefaultRate},
    {"HAKMEM_PROF", "heap profiler: sample the heap by call stack (1 = on; docs/PROFILING.md)", false, &g_raw[6], 0},
    {"HAKMEM_PROF_SAMPLE", "heap profiler: bytes allocated per sample on average (0 = 524288)", false, &g_raw[7], 0},
    {"HAKMEM_PROF_LEAKS", "heap profiler: print the stacks of blocks still live at exit (1 = on)", false, &g_raw[8], 0},
    {"HAKMEM_PROF_SIGNAL", "heap profiler: signal number that dumps the live profile (0 = none)", false, &g_raw[9], 0},
};

}  // namespace

uint64_t options_parse_u64(const char* s) {
  uint64_t v = 0;
  while (*s >= '0' && *s <= '9') v = v * 10 + uint64_t(*s++ - '0');
  return v;
}

void options_init() {
  if (g_ready) return;
  for (const OptionInfo& o : kTable) {
    const char* s = os_getenv(o.name);
    *o.value = (s != nullptr && !(o.debug_only && kRelease)) ? options_parse_u64(s) : o.def;
  }
  g_options.stats = g_raw[0] != 0;
  g_options.verbose = g_raw[1] != 0;
  g_options.fault_mmap = g_raw[2];
  if (g_options.fault_mmap != 0) os_fault_injection_set(g_options.fault_mmap);
  g_options.check = g_raw[3];
  detail::g_check_every = g_options.check;
  g_options.decay_thread = g_raw[4] != 0;
  g_options.guard = g_raw[5];
  g_options.prof = g_raw[6] != 0;
  g_options.prof_sample = g_raw[7];
  g_options.prof_leaks = g_raw[8] != 0;
  g_options.prof_signal = g_raw[9];
  g_ready = true;
}

const Options& options() { return g_options; }

void options_print() {
  diag_print("build: %s variant (HAKMEM_BUILD_RELEASE=%d, HAKMEM_SECURE=%d), page size %zu, %s environment",
             kSecure ? "secure" : kRelease ? "release" : "debug", kRelease ? 1 : 0, kSecure ? 1 : 0, os_page_size(),
             os_is_secure() ? "secure (AT_SECURE: options ignored)" : "normal");
  for (const OptionInfo& o : kTable) {
    if (o.debug_only && kRelease) continue;
    diag_print("option %s = %lu  (%s)", o.name, (unsigned long)*o.value, o.description);
  }
}

}  // namespace hak
