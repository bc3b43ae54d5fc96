// stats_known.c — a program whose live allocations at exit are known exactly, for
// tests/preload/stats_output.sh: 1000 blocks of 64 B (60 bytes asked for: the 64-byte class in
// every variant, the secure one's canary included), 10 spans of 100 000 B, 3 Large blocks of
// 3 MiB. Also prints malloc_info's XML and mallinfo2 on stdout for the test to parse.
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void* volatile keep[1013];

int main(void) {
  int k = 0;
  for (int i = 0; i < 1000; ++i) keep[k++] = malloc(60);
  for (int i = 0; i < 10; ++i) keep[k++] = malloc(100000);
  for (int i = 0; i < 3; ++i) keep[k++] = malloc(3 << 20);
  for (int i = 0; i < k; ++i) {
    if (keep[i] == NULL) return 1;
    memset(keep[i], 1, 60);
  }
  struct mallinfo2 mi = mallinfo2();
  printf("mallinfo2 uordblks=%zu hblkhd=%zu arena=%zu\n", mi.uordblks, mi.hblkhd, mi.arena);
  fflush(stdout);
  malloc_info(0, stdout);
  fflush(stdout);
  return 0;
}
