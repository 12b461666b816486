/* Helpers shared by the fuzz targets: a trap for a broken invariant, a
 * scratch directory made once per process (on tmpfs when there is one,
 * removed at exit), whole-file writes, and the PAN scan of an answer. */
#ifndef TSW_FUZZ_UTIL_H
#define TSW_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant: trap, so libFuzzer keeps the input and replay fails. */
static inline void fuzz_check(bool ok)
{
	if (!ok)
		__builtin_trap();
}

/* The process's scratch directory (made on the first call; removed with
 * everything under it at exit). Aborts when it cannot be made. */
const char *fuzz_dir(void);
/* Writes len bytes to dir/name with mode; returns the path (static
 * buffer, until the next call). Aborts on failure. */
const char *fuzz_write(const char *name, const void *data, size_t len, unsigned mode);
/* True when hay holds needle. */
bool fuzz_has(const void *hay, size_t hay_len, const void *needle, size_t needle_len);

#endif
