// misuse_at_exit — a double free that stays in the thread's cache until the program ends.
//   misuse_at_exit double   free(p); the program wipes p's second word (the free-block key:
//                           free_link.h) through the dangling pointer; free(p); return from
//                           main: the second free cannot see the key, so the double free is
//                           still in the cache at exit, and must be reported there
//   misuse_at_exit clean    blocks of several classes still cached at exit: must exit 0
// (tests/preload/misuse_at_exit.sh)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic ignored "-Wuse-after-free"  // the double free is the point

static void* volatile sink;

int main(int argc, char** argv) {
  const char* mode = argc == 2 ? argv[1] : "";
  if (strcmp(mode, "double") == 0) {
    void* p = malloc(28);  // the 32-byte class in every variant (the secure one's canary included)
    sink = p;
    free(p);
    ((void* volatile*)p)[1] = NULL;  // use after free: the key is gone
    free(p);  // both frees land in the TLS cache; nothing else runs before exit
    return 0;
  }
  if (strcmp(mode, "clean") == 0) {
    void* keep[64];
    for (int i = 0; i < 64; ++i) sink = keep[i] = malloc((size_t)(16 + 40 * i));
    for (int i = 0; i < 64; i += 2) free(keep[i]);
    return 0;
  }
  fprintf(stderr, "usage: misuse_at_exit double|clean\n");
  return 2;
}
