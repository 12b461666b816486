/* LD_PRELOAD shim for profiling under valgrind only (never linked into
 * tokswitch): valgrind cannot map the vault's 64 GiB LMDB address space
 * (mmap fails with EINVAL inside it), so this caps mdb_env_set_mapsize at
 * TSW_VALGRIND_MAP_BYTES. The map size is address space, not data: a
 * bench vault of a few hundred thousand tokens fits many times over.
 * bench/engine/callgrind uses it.
 */
#include <dlfcn.h>
#include <errno.h>
#include <lmdb.h>
#include <stddef.h>

#define TSW_VALGRIND_MAP_BYTES ((size_t)4 << 30)

int mdb_env_set_mapsize(MDB_env *env, size_t size)
{
	int (*real)(MDB_env *, size_t) =
	    (int (*)(MDB_env *, size_t))dlsym(RTLD_NEXT, "mdb_env_set_mapsize");

	if (!real)
		return EINVAL;
	return real(env, size > TSW_VALGRIND_MAP_BYTES ? TSW_VALGRIND_MAP_BYTES : size);
}
