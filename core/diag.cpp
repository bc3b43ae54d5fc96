// diag.cpp — non-allocating formatter and fatal-error reporting (see diag.h).
#include "diag.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "os.h"

namespace hak {
namespace {

struct Out {
  char* buf;
  size_t cap, len;
  void put(char c) {
    if (len + 1 < cap) buf[len] = c;
    ++len;
  }
  void puts(const char* s) {
    while (*s) put(*s++);
  }
  void num(uint64_t v, unsigned base, bool neg) {
    char tmp[24];
    int n = 0;
    do {
      tmp[n++] = "0123456789abcdef"[v % base];
      v /= base;
    } while (v);
    if (neg) put('-');
    while (n) put(tmp[--n]);
  }
};

}  // namespace

namespace {

// One conversion (after '%', flags and width) into o.
void convert(Out& o, const char*& f, va_list& ap) {
  int longs = 0;
  bool size_t_mod = false;
  while (*f == 'l') ++longs, ++f;
  if (*f == 'z') size_t_mod = true, ++f;
  switch (*f) {
    case 's': {
      const char* s = va_arg(ap, const char*);
      o.puts(s ? s : "(null)");
      break;
    }
    case 'd': {
      int64_t v = longs ? va_arg(ap, long) : size_t_mod ? va_arg(ap, ssize_t) : va_arg(ap, int);
      o.num(v < 0 ? uint64_t(0) - uint64_t(v) : uint64_t(v), 10, v < 0);
      break;
    }
    case 'u':
    case 'x': {
      uint64_t v = (longs || size_t_mod) ? va_arg(ap, unsigned long) : va_arg(ap, unsigned);
      if (*f == 'x') o.puts("0x");
      o.num(v, *f == 'x' ? 16 : 10, false);
      break;
    }
    case 'p':
      o.puts("0x");
      o.num(uint64_t(uintptr_t(va_arg(ap, void*))), 16, false);
      break;
    case '%':
      o.put('%');
      break;
    case '\0':
      --f;
      break;
    default:
      o.put('%');
      o.put(*f);
  }
}

}  // namespace

size_t diag_vformat(char* buf, size_t cap, const char* fmt, va_list ap_in) {
  va_list ap;
  va_copy(ap, ap_in);
  Out o{buf, cap, 0};
  for (const char* f = fmt; *f; ++f) {
    if (*f != '%') {
      o.put(*f);
      continue;
    }
    ++f;
    bool left = false;
    if (*f == '-') left = true, ++f;
    size_t width = 0;
    while (*f >= '0' && *f <= '9') width = width * 10 + size_t(*f++ - '0');
    if (width == 0) {
      convert(o, f, ap);
      continue;
    }
    // Pad to the width: convert into a scratch buffer first.
    char tmp[64];
    Out t{tmp, sizeof(tmp), 0};
    convert(t, f, ap);
    size_t n = t.len < sizeof(tmp) ? t.len : sizeof(tmp) - 1;
    if (!left)
      for (size_t i = n; i < width; ++i) o.put(' ');
    for (size_t i = 0; i < n; ++i) o.put(tmp[i]);
    if (left)
      for (size_t i = n; i < width; ++i) o.put(' ');
  }
  va_end(ap);
  if (cap) buf[o.len < cap ? o.len : cap - 1] = '\0';
  return o.len < cap ? o.len : (cap ? cap - 1 : 0);
}

size_t diag_format(char* buf, size_t cap, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t n = diag_vformat(buf, cap, fmt, ap);
  va_end(ap);
  return n;
}

static void diag_vprint(const char* fmt, va_list ap) {
  char buf[512];
  memcpy(buf, "hakmem: ", 8);
  size_t n = 8 + diag_vformat(buf + 8, sizeof(buf) - 9, fmt, ap);
  buf[n++] = '\n';
  os_write_stderr(buf, n);
}

void diag_print(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_vprint(fmt, ap);
  va_end(ap);
}

void hak_fatal(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_vprint(fmt, ap);
  va_end(ap);
  abort();
}

}  // namespace hak
