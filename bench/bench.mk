# Benchmarks: included by the top-level Makefile.
#
#   bench/<name>.cpp               one benchmark each, built twice per variant:
#     -> out/<v>/<name>_hakmem       libhakmem.a linked in (--whole-archive)
#     -> out/<v>/<name>_system       plain libc malloc; switch allocators with LD_PRELOAD
#   bench/broken/overlap_malloc.c  a deliberately broken LD_PRELOAD allocator
#     -> out/<v>/bench/overlap_malloc.so   (tests/preload/bench_detects_broken_allocator.sh)
#
#   make bench            every benchmark, both variants
#   make bench-release    one variant
#   scripts/bench_compare.sh   runs the comparison (./build.sh bench does all of it)

BENCH_SRCS  := $(sort $(wildcard bench/*.cpp))
BENCH_NAMES := $(basename $(notdir $(BENCH_SRCS)))
BENCH_HDRS  := bench/bench_util.h bench/bench_queue.h

define BENCH_RULES
BENCH_SYSTEM_$(1) := $$(foreach n,$$(BENCH_NAMES),out/$(1)/$$(n)_system)
BENCH_HAKMEM_$(1) := $$(foreach n,$$(BENCH_NAMES),out/$(1)/$$(n)_hakmem)
BENCH_BROKEN_$(1) := out/$(1)/bench/overlap_malloc.so

out/$(1)/%_hakmem: bench/%.cpp $$(BENCH_HDRS) out/$(1)/libhakmem.a
	@mkdir -p $$(@D)
	$$(CXX) $$(PROG_CXXFLAGS) $$(FLAGS_$(1)) -o $$@ $$< $$(call HAKMEM_LINK,$(1))

out/$(1)/%_system: bench/%.cpp $$(BENCH_HDRS)
	@mkdir -p $$(@D)
	$$(CXX) $$(PROG_CXXFLAGS) $$(FLAGS_$(1)) -o $$@ $$<

out/$(1)/bench/overlap_malloc.so: bench/broken/overlap_malloc.c
	@mkdir -p $$(@D)
	$$(CC) $$(PROG_CFLAGS) -fPIC -shared -o $$@ $$< -ldl

bench-$(1): $$(BENCH_SYSTEM_$(1)) $$(BENCH_HAKMEM_$(1)) $$(BENCH_BROKEN_$(1))

# The shell tests in tests/preload run the benchmarks: make them part of tests-<v>.
tests-$(1): $$(BENCH_SYSTEM_$(1)) $$(BENCH_HAKMEM_$(1)) $$(BENCH_BROKEN_$(1))
BENCH_TEST_DEPS += $$(BENCH_SYSTEM_$(1)) $$(BENCH_HAKMEM_$(1)) $$(BENCH_BROKEN_$(1))
endef
$(foreach v,$(VARIANTS),$(eval $(call BENCH_RULES,$(v))))

.PHONY: bench $(foreach v,$(VARIANTS),bench-$(v))
bench: $(foreach v,$(VARIANTS),bench-$(v))

ALL_EXTRA += bench $(BENCH_TEST_DEPS)
