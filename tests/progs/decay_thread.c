// decay_thread.c — run under LD_PRELOAD by tests/preload/decay_thread.sh: the idle-decay
// thread as a program sees it. Prints, one per line:
//   threads_before N     threads of the process before any Large free (1: none started yet)
//   threads_after N      threads after a 64 MiB block was freed
//   thread_name S        the name of the second thread, if any
//   kept_mib N           RSS above the start right after the free, in MiB
//   idle_mib N           RSS above the start after 2 s with no allocator call, in MiB
//   small_freed_mib N    RSS above the start right after 256 MiB of 16-256 B blocks were freed
//   small_idle_mib N     the same after 2 s more with no allocator call
//   single_threaded N    1 when fork+exec of /bin/true still worked in the child afterwards
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int threads(char* second_name, size_t cap) {
  DIR* d = opendir("/proc/self/task");
  if (!d) return -1;
  int n = 0;
  struct dirent* e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    ++n;
    if (second_name && atoi(e->d_name) != getpid()) {
      char path[300];
      snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
      FILE* f = fopen(path, "r");
      if (f) {
        if (fgets(second_name, (int)cap, f)) second_name[strcspn(second_name, "\n")] = 0;
        fclose(f);
      }
    }
  }
  closedir(d);
  return n;
}

static long rss_mib(void) {
  FILE* f = fopen("/proc/self/statm", "r");
  long size = 0, res = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &size, &res) != 2) res = 0;
    fclose(f);
  }
  return res * sysconf(_SC_PAGESIZE) / (1 << 20);
}

int main(void) {
  char name[64] = "-";
  printf("threads_before %d\n", threads(NULL, 0));
  long start = rss_mib();
  char* p = malloc(64 << 20);
  if (!p) return 1;
  memset(p, 1, 64 << 20);
  __asm__ volatile("" : : "r"(p) : "memory");  // keep the malloc/memset/free
  free(p);
  long kept = rss_mib() - start;
  printf("threads_after %d\n", threads(name, sizeof name));
  printf("thread_name %s\n", name);
  printf("kept_mib %ld\n", kept);
  struct timespec ts = {2, 0};
  nanosleep(&ts, NULL);
  printf("idle_mib %ld\n", rss_mib() - start);
  // Small blocks: their SuperSlab slots are given back as runs empty, resident until a decay
  // pass decommits them; the program goes idle right after the frees.
  enum { kSmall = 256 << 20, kMaxBlocks = kSmall / 16 };
  void** arr = mmap(NULL, kMaxBlocks * sizeof(void*), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (arr == MAP_FAILED) return 1;
  size_t n = 0, bytes = 0;
  unsigned long long x = 88172645463325252ull;
  while (bytes < kSmall) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    size_t sz = 16 + (size_t)(x % 241);
    char* b = malloc(sz);
    if (!b) return 1;
    memset(b, 3, sz);
    arr[n++] = b;
    bytes += sz;
  }
  for (size_t i = 0, k = 0, step = 7919; i < n; ++i, k = (k + step) % n) free(arr[k]);  // n is not a multiple of 7919
  munmap(arr, kMaxBlocks * sizeof(void*));
  printf("small_freed_mib %ld\n", rss_mib() - start);
  nanosleep(&ts, NULL);
  printf("small_idle_mib %ld\n", rss_mib() - start);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    char* q = malloc(32 << 20);  // the child's heap works and may start its own thread
    memset(q, 2, 32 << 20);
    __asm__ volatile("" : : "r"(q) : "memory");
    free(q);
    execl("/bin/true", "true", (char*)NULL);
    _exit(127);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  printf("single_threaded %d\n", WIFEXITED(st) && WEXITSTATUS(st) == 0);
  return 0;
}
