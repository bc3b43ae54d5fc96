// fork_single.c — fork() from a process with one thread (hakmem's atfork handlers take no lock
// then: hakmem.cpp, fork_prepare), and from the same process once it has had a second thread
// (they do). Every child checks the blocks it inherited, frees some, allocates in every tier,
// runs two threads that allocate and free, trims and exits; the parent changes its heap
// between forks and checks its blocks at the end.
// Run under LD_PRELOAD=libhakmem.so by tests/preload/fork_single.sh; also correct without it.
// Prints "fork_single: OK (<n> forks)"; exits non-zero on any failure.
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/single_threaded.h>
#include <sys/wait.h>
#include <unistd.h>

enum { kBlocks = 300, kForksSingle = 40, kForksThreaded = 10 };
static void* g_block[kBlocks];
static size_t g_size[kBlocks];

static size_t size_of(unsigned i) {
  static const size_t big[] = {100000, 300000, 8u << 20};  // span, span, Large
  return i % 50 == 49 ? big[(i / 50) % 3] : 16 + (i * 2654435761u) % 32768;
}
static unsigned char tag(unsigned i, unsigned gen) { return (unsigned char)(i * 31 + gen * 7 + 1); }

static void fill(unsigned i, unsigned gen) {
  unsigned char* p = g_block[i];
  memset(p, tag(i, gen), 16);
  memset(p + g_size[i] - 16, tag(i, gen), 16);
}
static int intact(unsigned i, unsigned gen) {
  const unsigned char* p = g_block[i];
  for (int k = 0; k < 16; ++k)
    if (p[k] != tag(i, gen) || p[g_size[i] - 16 + k] != tag(i, gen)) return 0;
  return 1;
}

static void* churn(void* arg) {
  uintptr_t seed = (uintptr_t)arg;
  void* keep[64] = {0};
  for (int n = 0; n < 20000; ++n) {
    seed = seed * 6364136223846793005u + 1442695040888963407u;
    int slot = (int)(seed >> 58);
    size_t sz = 16 + (seed >> 20) % 4096;
    free(keep[slot]);
    keep[slot] = malloc(sz);
    if (keep[slot] == NULL) return (void*)1;
    memset(keep[slot], 0x5a, sz);
  }
  for (int k = 0; k < 64; ++k) free(keep[k]);
  return NULL;
}

static int child_work(unsigned gen) {
  for (unsigned i = 0; i < kBlocks; ++i)
    if (!intact(i, gen)) {
      fprintf(stderr, "fork_single: FAIL child %u: inherited block %u (%zu bytes) changed\n", gen, i, g_size[i]);
      return 1;
    }
  for (unsigned i = 0; i < kBlocks; i += 2) {
    free(g_block[i]);
    g_block[i] = malloc(g_size[i]);
    if (g_block[i] == NULL) return 1;
    fill(i, gen + 1000);
  }
  pthread_t t[2];
  for (int k = 0; k < 2; ++k)
    if (pthread_create(&t[k], NULL, churn, (void*)(uintptr_t)(gen * 2 + k + 1)) != 0) return 1;
  for (int k = 0; k < 2; ++k) {
    void* r;
    pthread_join(t[k], &r);
    if (r != NULL) return 1;
  }
  for (unsigned i = 0; i < kBlocks; ++i)
    if (!intact(i, (i % 2 == 0) ? gen + 1000 : gen)) return 1;
  malloc_trim(0);
  return 0;
}

static int fork_once(unsigned gen) {
  pid_t pid = fork();
  if (pid < 0) return 1;
  if (pid == 0) _exit(child_work(gen));
  int st;
  if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    fprintf(stderr, "fork_single: FAIL child %u exited with status %d\n", gen, st);
    return 1;
  }
  // The parent changes its heap between forks: a tenth of its blocks, in every tier.
  for (unsigned i = gen % 10; i < kBlocks; i += 10) {
    free(g_block[i]);
    if ((g_block[i] = malloc(g_size[i])) == NULL) return 1;
  }
  for (unsigned i = 0; i < kBlocks; ++i) fill(i, gen + 1);
  return 0;
}

static volatile int g_stop;
static void* churn_until_stopped(void* arg) {
  while (!g_stop)
    if (churn(arg) != NULL) return (void*)1;
  return NULL;
}

int main(void) {
  alarm(120);  // a lock left taken by a fork would hang the next one
  if (!__libc_single_threaded) {
    fprintf(stderr, "fork_single: FAIL the process has had a thread before main\n");
    return 1;
  }
  for (unsigned i = 0; i < kBlocks; ++i) {
    g_size[i] = size_of(i);
    if ((g_block[i] = malloc(g_size[i])) == NULL) return 1;
  }
  for (unsigned i = 0; i < kBlocks; ++i) fill(i, 0);
  unsigned gen = 0;
  for (int f = 0; f < kForksSingle; ++f, ++gen) {
    if (!__libc_single_threaded) {
      fprintf(stderr, "fork_single: FAIL a thread appeared before fork %d (these forks take no lock)\n", f);
      return 1;
    }
    if (fork_once(gen)) return 1;
  }
  // Forks with the locks taken, while a second thread allocates and frees.
  pthread_t t;
  void* r;
  if (pthread_create(&t, NULL, churn_until_stopped, (void*)7) != 0) return 1;
  for (int f = 0; f < kForksThreaded; ++f, ++gen)
    if (fork_once(gen)) return 1;
  g_stop = 1;
  if (pthread_join(t, &r) != 0 || r != NULL) return 1;
  for (unsigned i = 0; i < kBlocks; ++i)
    if (!intact(i, gen)) {
      fprintf(stderr, "fork_single: FAIL parent's block %u changed\n", i);
      return 1;
    }
  for (unsigned i = 0; i < kBlocks; ++i) free(g_block[i]);
  printf("fork_single: OK (%d forks)\n", kForksSingle + kForksThreaded);
  return 0;
}
