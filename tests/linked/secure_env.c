// secure_env.c — linked with libhakmem.a (tests/tests.mk: tests/linked/*.c), run by
// tests/preload/secure_env.sh as a plain, a setuid and a setgid copy. Allocates a little
// through malloc (hakmem's, linked in) and prints one line on stdout describing how it ran:
//
//   secure_env: at_secure=N ruid=N euid=N rgid=N egid=N hakmem_vars=N malloc=ok|failed
//
// at_secure is getauxval(AT_SECURE), the flag hakmem reads to ignore its environment;
// hakmem_vars counts hakmem's option variables (HAKMEM_VERBOSE, HAKMEM_STATS,
// HAKMEM_FAULT_MMAP) still in the program's environment (glibc's loader strips only its own
// list of variables in a secure process, so hakmem must ignore them itself); malloc says
// whether malloc(100) succeeded (HAKMEM_FAULT_MMAP=1 makes it fail in the debug variant).
// Everything hakmem prints goes to stderr. Output uses write(2), not stdio, so it does not
// depend on malloc. Exits 0 unless it cannot write.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

extern char** environ;

int main(void) {
  void* volatile p = malloc(100);  // volatile: the compiler may not drop the malloc/free pair
  int ok = p != NULL;
  if (ok) {
    memset(p, 0xa5, 100);
    free(p);
  }
  static const char* const kOptions[] = {"HAKMEM_VERBOSE=", "HAKMEM_STATS=", "HAKMEM_FAULT_MMAP="};
  int vars = 0;
  for (char** e = environ; *e != NULL; ++e)
    for (size_t i = 0; i < sizeof kOptions / sizeof kOptions[0]; ++i)
      vars += strncmp(*e, kOptions[i], strlen(kOptions[i])) == 0;
  char buf[256];
  int n = snprintf(buf, sizeof buf, "secure_env: at_secure=%lu ruid=%d euid=%d rgid=%d egid=%d hakmem_vars=%d malloc=%s\n",
                   getauxval(AT_SECURE), (int)getuid(), (int)geteuid(), (int)getgid(), (int)getegid(),
                   vars, ok ? "ok" : "failed");
  return write(1, buf, (size_t)n) == n ? 0 : 1;
}
