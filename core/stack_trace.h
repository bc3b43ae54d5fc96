// stack_trace.h — call stacks without allocating: return addresses by the frame-pointer
// chain, bounded by the pages of the thread's stack, and their names by the dynamic symbol
// table (dladdr). Used by the guarded pool's reports (guarded.cpp) and the heap profiler's
// samples and leak report (prof.cpp).
//
// The walk reads a frame directly while it lies on a page already known to be readable (the
// current frame's, or one read once through os_read_safely), so code built without frame
// pointers ends the walk instead of faulting, and after a thread's first walk its frames cost
// no system call. The frames of a shared libhakmem itself are told apart by address (its
// executable segment, found once through dl_iterate_phdr); linked into the program, they
// cannot be, and stay in the stack.
//
// May call: os, diag. Called by guarded.cpp and prof.cpp.
#ifndef HAKMEM_STACK_TRACE_H
#define HAKMEM_STACK_TRACE_H

#include <stddef.h>
#include <stdint.h>

namespace hak {

// Up to `max` return addresses, the innermost first (the caller of stack_capture's caller).
int stack_capture(uintptr_t* pcs, int max);

// The same by the unwind tables (libgcc's unwinder, linked into the library: it reads each
// object's .eh_frame through dl_iterate_phdr and allocates nothing), for code built without
// frame pointers, where the walk above stops at the first such frame. Slower (a table lookup
// per frame).
int stack_capture_unwind(uintptr_t* pcs, int max);

// The frame-pointer walk, or the unwind tables' when the walk broke off at the first frame
// outside the library (the program keeps no frame pointers) and they find more: deep stacks
// from programs built either way, at the walk's cost where frame pointers are kept.
int stack_capture_any(uintptr_t* pcs, int max);

// Whether pc lies in the code of a shared libhakmem (false when linked into the program).
bool stack_own_frame(uintptr_t pc);

// The number of leading frames of pcs[0..n) that are the library's own (at most n - 1).
int stack_own_prefix(const uintptr_t* pcs, int n);

// Prints pcs[first..n) with diag_print, one "  #i 0xPC symbol+off (file)" line each.
void stack_print(const uintptr_t* pcs, int n, int first);

}  // namespace hak

#endif  // HAKMEM_STACK_TRACE_H
