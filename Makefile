# hakmem — top-level build.
#
#   make release | debug | secure | all   libraries (+ benches, tests) for one or every variant
#   make test                       build and run every test against every variant
#   make bench                      build the benchmark binaries (both variants)
#   make valgrind                   unit tests under memcheck (debug variant)
#   make install PREFIX=/usr/local  library (and the debug and secure ones under lib/hakmem/), header,
#                                   pkg-config file, bin/hakmem (scripts/hakmem: run a program on hakmem)
#   make clean
#
# Variants: out/release (HAKMEM_BUILD_RELEASE=1, -O2, -g, frame pointers),
#           out/debug   (HAKMEM_BUILD_RELEASE=0, assertions, invariant checks, counters,
#                        freed-memory poisoning) and
#           out/secure  (release + HAKMEM_SECURE=1: free-list links hardened on the fast
#                        paths, core/free_link.h; about 4 % slower, docs/BENCHMARKS.md).

SHELL      := /bin/bash
CXX        ?= g++
CC         ?= gcc
PREFIX     ?= /usr/local
VARIANTS   := release debug secure

CORE_SRCS  := $(sort $(wildcard core/*.cpp))
CORE_HDRS  := $(wildcard core/*.h)

# Flags shared by every variant of the runtime library.
#  - no exceptions/RTTI, no libstdc++ runtime (link with $(CC)); unwind tables stay, so the
#    std::bad_alloc thrown by libstdc++ from inside operator new unwinds through our frames;
#  - initial-exec TLS (no __tls_get_addr, which can call malloc);
#  - no builtin malloc/calloc so GCC never turns malloc+memset into a calloc call inside us;
#  - calls into libc through the PLT, bound lazily: a process binds only the few it calls
#    (-fno-plt bound all 65 at load: ~30 k instructions of the dynamic linker, 8 % of a short
#    process such as tr; the malloc and free fast paths call nothing: docs/BENCHMARKS.md,
#    "Short processes").
CORE_CXXFLAGS := -std=c++20 -fPIC -fno-exceptions -fno-rtti -fno-threadsafe-statics \
                 -ftls-model=initial-exec -fvisibility=hidden -fasynchronous-unwind-tables \
                 -fno-builtin-malloc -fno-builtin-calloc -fno-builtin-free -fno-builtin-realloc \
                 -Wall -Wextra -Wno-unused-parameter -Icore -MMD -MP
FLAGS_release := -O2 -g -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer -DHAKMEM_BUILD_RELEASE=1 -DNDEBUG
FLAGS_debug   := -O1 -g -fno-omit-frame-pointer -DHAKMEM_BUILD_RELEASE=0
FLAGS_secure  := $(FLAGS_release) -DHAKMEM_SECURE=1

# Test and bench programs may use the whole C++ runtime.
PROG_CXXFLAGS := -std=c++20 -O2 -g -fno-omit-frame-pointer -Wall -Wextra -Wno-unused-parameter -Icore -MMD -MP -pthread
PROG_CFLAGS   := -std=gnu11 -O2 -g -fno-omit-frame-pointer -Wall -Wextra -Wno-unused-parameter -Icore -MMD -MP -pthread

.PHONY: all release debug test bench valgrind install clean setup libs
.DEFAULT_GOAL := all

all: release debug $(ALL_EXTRA)
libs: $(foreach v,$(VARIANTS),out/$(v)/libhakmem.so out/$(v)/libhakmem.a)

setup:
	@scripts/setup.sh

# ---------------------------------------------------------------------------
# The runtime library, per variant.
define VARIANT_RULES
OBJS_$(1) := $$(patsubst core/%.cpp,out/$(1)/obj/core/%.o,$$(CORE_SRCS))

# The Makefile is a prerequisite: a change of flags rebuilds the library.
out/$(1)/obj/core/%.o: core/%.cpp Makefile
	@mkdir -p $$(@D)
	$$(CXX) $$(CORE_CXXFLAGS) $$(FLAGS_$(1)) -c $$< -o $$@

out/$(1)/libhakmem.a: $$(OBJS_$(1))
	@mkdir -p $$(@D)
	rm -f $$@ && ar rcs $$@ $$^

out/$(1)/libhakmem.so: $$(OBJS_$(1))
	@mkdir -p $$(@D)
	$$(CC) -shared -Wl,-soname,libhakmem.so -Wl,-z,nodelete -Wl,-O1 -o $$@ $$^ -static-libgcc

$(1): out/$(1)/libhakmem.so out/$(1)/libhakmem.a
endef
$(foreach v,$(VARIANTS),$(eval $(call VARIANT_RULES,$(v))))

# Link a program against the static library (its malloc replaces libc's in the executable).
HAKMEM_LINK = -Wl,--whole-archive out/$(1)/libhakmem.a -Wl,--no-whole-archive

-include bench/bench.mk
-include tests/tests.mk
all: $(ALL_EXTRA)

-include $(shell find out -name '*.d' 2>/dev/null)

# ---------------------------------------------------------------------------
install: libs
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -d $(DESTDIR)$(PREFIX)/lib/hakmem/debug $(DESTDIR)$(PREFIX)/lib/hakmem/secure
	install -m 755 scripts/hakmem $(DESTDIR)$(PREFIX)/bin/hakmem
	install -m 755 out/debug/libhakmem.so $(DESTDIR)$(PREFIX)/lib/hakmem/debug/libhakmem.so
	install -m 755 out/secure/libhakmem.so $(DESTDIR)$(PREFIX)/lib/hakmem/secure/libhakmem.so
	install -m 755 out/release/libhakmem.so $(DESTDIR)$(PREFIX)/lib/libhakmem.so
	install -m 644 out/release/libhakmem.a $(DESTDIR)$(PREFIX)/lib/libhakmem.a
	install -m 644 core/hakmem.h $(DESTDIR)$(PREFIX)/include/hakmem.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' scripts/hakmem.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/hakmem.pc

clean:
	rm -rf out
