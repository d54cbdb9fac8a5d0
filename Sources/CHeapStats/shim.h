#ifndef PARLEY_CHEAPSTATS_SHIM_H
#define PARLEY_CHEAPSTATS_SHIM_H
#include <malloc.h>
#include <stddef.h>

/* Bytes of heap in use (glibc's mallinfo2), for the memory benchmark. */
static inline size_t parley_heap_in_use(void) { return mallinfo2().uordblks; }

#endif
