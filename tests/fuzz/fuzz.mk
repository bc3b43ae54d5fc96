# tests/fuzz/fuzz.mk — the libFuzzer target tests/fuzz/fuzz_ops.cpp, per variant:
#
#   out/<v>/fuzz/fuzz_ops    clang++ -fsanitize=fuzzer, linked with hakmem's core objects
#                            compiled by clang++ with CORE_CXXFLAGS + the variant's flags +
#                            -fsanitize=fuzzer-no-link (coverage only; no ASan: hakmem is the
#                            process's malloc). debug: HAKMEM_BUILD_RELEASE=0 (checks on),
#                            release: the release flags.
#   make fuzz-release | fuzz-debug
#
# Included from tests/tests.mk. When clang++ and its libFuzzer runtime are present, the
# fuzzer is part of tests-<v> (so `make test` builds it and tests/preload/fuzz_short.sh runs
# it); otherwise nothing here is required and fuzz_short.sh skips (Debian: clang-14 and
# libclang-rt-14-dev, or the unversioned clang package).

FUZZ_CXX ?= $(firstword $(shell command -v clang++-14 clang++ 2>/dev/null))
FUZZ_RT  := $(if $(FUZZ_CXX),$(wildcard $(shell $(FUZZ_CXX) -print-resource-dir 2>/dev/null)/lib/linux/libclang_rt.fuzzer-x86_64.a))
FUZZ_FLAGS_release := -O2 -g -DHAKMEM_BUILD_RELEASE=1 -DNDEBUG
FUZZ_FLAGS_debug   := -O1 -g -DHAKMEM_BUILD_RELEASE=0

define FUZZ_RULES
FUZZ_OBJS_$(1) := $$(patsubst core/%.cpp,out/$(1)/fuzz/obj/core/%.o,$$(CORE_SRCS))

out/$(1)/fuzz/obj/core/%.o: core/%.cpp
	@mkdir -p $$(@D)
	$$(FUZZ_CXX) $$(CORE_CXXFLAGS) $$(FUZZ_FLAGS_$(1)) -fsanitize=fuzzer-no-link -c $$< -o $$@

out/$(1)/fuzz/fuzz_ops: tests/fuzz/fuzz_ops.cpp tests/api/diff_model.h $$(FUZZ_OBJS_$(1))
	@mkdir -p $$(@D)
	$$(FUZZ_CXX) -std=c++20 $$(FUZZ_FLAGS_$(1)) -fsanitize=fuzzer -fsized-deallocation -pthread -Icore -o $$@ $$< $$(FUZZ_OBJS_$(1))

.PHONY: fuzz-$(1)
fuzz-$(1): out/$(1)/fuzz/fuzz_ops
ifneq ($$(FUZZ_RT),)
tests-$(1): out/$(1)/fuzz/fuzz_ops
endif
endef
$(foreach v,$(VARIANTS),$(eval $(call FUZZ_RULES,$(v))))
