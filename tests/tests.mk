# Tests: built per variant, run by scripts/run_tests.sh (make test).
#
#   tests/unit/*.cpp, tests/api/*.cpp  Criterion programs linked with that variant's libhakmem.a
#                                      -> out/<v>/tests/<name>
#   tests/progs/*.c, *.cpp             plain programs (no hakmem linked; used under LD_PRELOAD)
#                                      -> out/<v>/tests/progs/<name>
#   tests/linked/*.c                   plain programs linked with that variant's libhakmem.a
#                                      -> out/<v>/tests/linked/<name> (run by shell tests)
#   tests/preload/*.sh                 shell tests; see scripts/run_tests.sh for their environment

TEST_SRCS  := $(sort $(wildcard tests/unit/*.cpp tests/api/*.cpp))
PROG_SRCS  := $(sort $(wildcard tests/progs/*.c tests/progs/*.cpp))
LINKED_SRCS := $(sort $(wildcard tests/linked/*.c))

define TEST_RULES
TESTS_$(1) := $$(foreach s,$$(TEST_SRCS),out/$(1)/tests/$$(basename $$(notdir $$(s))))
PROGS_$(1) := $$(foreach s,$$(PROG_SRCS),out/$(1)/tests/progs/$$(basename $$(notdir $$(s))))
LINKED_$(1) := $$(foreach s,$$(LINKED_SRCS),out/$(1)/tests/linked/$$(basename $$(notdir $$(s))))

out/$(1)/tests/%: tests/unit/%.cpp out/$(1)/libhakmem.a
	@mkdir -p $$(@D)
	$$(CXX) $$(PROG_CXXFLAGS) $$(FLAGS_$(1)) -o $$@ $$< $$(call HAKMEM_LINK,$(1)) -lcriterion

out/$(1)/tests/%: tests/api/%.cpp out/$(1)/libhakmem.a
	@mkdir -p $$(@D)
	$$(CXX) $$(PROG_CXXFLAGS) $$(FLAGS_$(1)) -o $$@ $$< $$(call HAKMEM_LINK,$(1)) -lcriterion

out/$(1)/tests/progs/%: tests/progs/%.c
	@mkdir -p $$(@D)
	$$(CC) $$(PROG_CFLAGS) -o $$@ $$< -ldl

out/$(1)/tests/progs/%: tests/progs/%.cpp
	@mkdir -p $$(@D)
	$$(CXX) $$(PROG_CXXFLAGS) -o $$@ $$< -ldl

out/$(1)/tests/linked/%: tests/linked/%.c out/$(1)/libhakmem.a
	@mkdir -p $$(@D)
	$$(CC) $$(PROG_CFLAGS) -o $$@ $$< $$(call HAKMEM_LINK,$(1))

# The heap profiler's leak report names functions through the dynamic symbol table.
out/$(1)/tests/progs/prof_sites: PROG_CXXFLAGS += -rdynamic

tests-$(1): $(1) $$(TESTS_$(1)) $$(PROGS_$(1)) $$(LINKED_$(1))
endef
$(foreach v,$(VARIANTS),$(eval $(call TEST_RULES,$(v))))

.PHONY: tests-release tests-debug tests-secure
test: setup
	@$(MAKE) --no-print-directory -j$$(nproc) tests-release tests-debug tests-secure
	@scripts/run_tests.sh

valgrind: setup
	@$(MAKE) --no-print-directory -j$$(nproc) tests-debug
	@scripts/run_tests.sh --valgrind
ALL_EXTRA += tests-release tests-debug tests-secure

# The libFuzzer target (optional: used when clang++ and its fuzzer runtime are installed).
-include tests/fuzz/fuzz.mk
