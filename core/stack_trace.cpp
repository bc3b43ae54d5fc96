// stack_trace.cpp — frame-pointer walks and frame names (see stack_trace.h).
#include "stack_trace.h"

#include <dlfcn.h>
#include <link.h>
#include <unwind.h>

#include <atomic>

#include "diag.h"
#include "hakmem_build_flags.h"
#include "os.h"

namespace hak {
namespace {

constexpr uintptr_t kPage = 4096;
// A frame-pointer walk that broke off having found fewer frames than this outside the
// library is retried by the unwind tables (stack_capture_any): one frame is what a program
// built without frame pointers gives (its function that called malloc, whose frame record is
// malloc's); two or more, a program with frame pointers whose chain ends in a library
// without them (libstdc++'s thread start), which the walk covers well enough at a tenth of
// the unwinder's cost (mid_large_mix with profiling on: 25 % of its time in the unwinder).
constexpr int kUnwindBelow = 2;

// Stack pages of this thread known to be readable.
HAK_TLS uintptr_t t_stack_ok_lo, t_stack_ok_hi;

// The executable segment of a shared libhakmem: [lo, hi); lo == hi when linked in.
std::atomic<int> g_own_state{0};  // 0 not looked up, 1 looking, 2 known
uintptr_t g_own_lo = 0, g_own_hi = 0;

// dl_iterate_phdr visits the program first: the library is shared when the object holding
// it is not that first one.
struct OwnLookup {
  uintptr_t base;
  int index;
};

int find_own_segment(dl_phdr_info* info, size_t, void* arg) {
  auto* look = static_cast<OwnLookup*>(arg);
  if (look->index++ == 0 || info->dlpi_addr != look->base) return 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_LOAD && (ph.p_flags & PF_X)) {
      g_own_lo = info->dlpi_addr + ph.p_vaddr;
      g_own_hi = g_own_lo + ph.p_memsz;
      break;
    }
  }
  return 1;
}

void own_segment_lookup() {
  int expect = 0;
  if (!g_own_state.compare_exchange_strong(expect, 1, std::memory_order_acq_rel)) {
    while (g_own_state.load(std::memory_order_acquire) != 2) {
    }
    return;
  }
  Dl_info self;
  if (dladdr(reinterpret_cast<void*>(&stack_own_frame), &self) != 0 && self.dli_fbase != nullptr) {
    OwnLookup look{reinterpret_cast<uintptr_t>(self.dli_fbase), 0};
    dl_iterate_phdr(find_own_segment, &look);
  }
  g_own_state.store(2, std::memory_order_release);
}

}  // namespace

namespace {

// The walk of stack_capture; *broken: it stopped at a frame record that is not one (code
// without frame pointers), rather than at the outermost frame (a saved frame pointer of 0,
// as _start and clone leave it) or at `max`.
int capture_fp(uintptr_t* fp, uintptr_t* pcs, int max, bool* broken) {
  uintptr_t here = uintptr_t(fp) & ~(kPage - 1);
  if (here < t_stack_ok_lo || here >= t_stack_ok_hi) {  // first walk, or another stack
    t_stack_ok_lo = here;
    t_stack_ok_hi = here + kPage;
  }
  int n = 0;
  *broken = true;
  while (n < max) {
    uintptr_t f = uintptr_t(fp), rec[2];
    if ((f & 7) != 0) break;
    if (f >= t_stack_ok_lo && f + sizeof rec <= t_stack_ok_hi) {
      rec[0] = fp[0];
      rec[1] = fp[1];
    } else {
      if (!os_read_safely(fp, rec, sizeof rec)) break;
      uintptr_t lo = f & ~(kPage - 1), hi = (f + sizeof rec + kPage - 1) & ~(kPage - 1);
      if (lo <= t_stack_ok_hi && hi > t_stack_ok_hi) t_stack_ok_hi = hi;  // grows up the stack
    }
    if (rec[1] < 4096) break;
    pcs[n++] = rec[1];
    if (rec[0] == 0) {  // the outermost frame
      *broken = false;
      break;
    }
    if (rec[0] <= f || rec[0] - f > (size_t(1) << 20)) break;  // the chain only goes up the stack
    fp = reinterpret_cast<uintptr_t*>(rec[0]);
  }
  if (n == max) *broken = false;
  return n;
}

}  // namespace

int stack_capture(uintptr_t* pcs, int max) {
  bool broken;
  return capture_fp(static_cast<uintptr_t*>(__builtin_frame_address(0)), pcs, max, &broken);
}

namespace {

struct UnwindState {
  uintptr_t* pcs;
  int n, max;
};

_Unwind_Reason_Code unwind_step(_Unwind_Context* ctx, void* arg) {
  auto* st = static_cast<UnwindState*>(arg);
  uintptr_t pc = _Unwind_GetIP(ctx);
  if (pc == 0) return _URC_END_OF_STACK;
  if (st->n > 0 || pc != 0) st->pcs[st->n++] = pc;
  return st->n < st->max ? _URC_NO_REASON : _URC_END_OF_STACK;
}

}  // namespace

int stack_capture_unwind(uintptr_t* pcs, int max) {
  UnwindState st{pcs, 0, max};
  _Unwind_Backtrace(unwind_step, &st);
  // The first entry is this function's own (the walk starts in it): the caller's caller
  // comes second, as stack_capture's first.
  if (st.n > 0) {
    for (int i = 1; i < st.n; ++i) pcs[i - 1] = pcs[i];
    --st.n;
  }
  return st.n;
}

int stack_capture_any(uintptr_t* pcs, int max) {
  bool broken;
  int got = capture_fp(static_cast<uintptr_t*>(__builtin_frame_address(0)), pcs, max, &broken);
  int mine = got - stack_own_prefix(pcs, got);
  if (!broken || mine >= kUnwindBelow) return got;
  // The frame-pointer chain broke early: most distributions build programs without frame
  // pointers. The unwind tables go on where it stopped.
  uintptr_t alt[128];
  int cap = max < 128 ? max : 128;
  int got2 = stack_capture_unwind(alt, cap);
  if (got2 - stack_own_prefix(alt, got2) <= mine) return got;
  for (int i = 0; i < got2; ++i) pcs[i] = alt[i];
  return got2;
}

bool stack_own_frame(uintptr_t pc) {
  if (HAK_UNLIKELY(g_own_state.load(std::memory_order_acquire) != 2)) own_segment_lookup();
  return pc - 1 >= g_own_lo && pc - 1 < g_own_hi;  // a return address follows its call
}

int stack_own_prefix(const uintptr_t* pcs, int n) {
  int first = 0;
  while (first < n - 1 && stack_own_frame(pcs[first])) ++first;
  return first;
}

void stack_print(const uintptr_t* pcs, int n, int first) {
  for (int i = first; i < n; ++i) {
    Dl_info info;
    // A return address points after its call: look up the call itself.
    if (dladdr(reinterpret_cast<void*>(pcs[i] - 1), &info) != 0 && info.dli_fname != nullptr) {
      if (info.dli_sname != nullptr)
        diag_print("  #%d %p %s+%lx (%s)", i - first, reinterpret_cast<void*>(pcs[i]), info.dli_sname,
                   (unsigned long)(pcs[i] - uintptr_t(info.dli_saddr)), info.dli_fname);
      else
        diag_print("  #%d %p (%s+%lx)", i - first, reinterpret_cast<void*>(pcs[i]), info.dli_fname,
                   (unsigned long)(pcs[i] - uintptr_t(info.dli_fbase)));
    } else {
      diag_print("  #%d %p", i - first, reinterpret_cast<void*>(pcs[i]));
    }
  }
}

}  // namespace hak
