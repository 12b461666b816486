/* Private to src/vault: a run of sealed rows waiting to be written, and
 * the sorted write that puts it into the vault (run.c). batch.c fills
 * runs; vault__run_write empties them. */
#ifndef TSW_VAULT_RUN_H
#define TSW_VAULT_RUN_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

struct slot {
	uint64_t key;	    /* token value */
	unsigned long line; /* what a reject reports */
	uint8_t card_key[CARD_KEY_BYTES];
	uint64_t off; /* record, then device ref, in the arena (staged: in the stage) */
	uint32_t idx; /* the slot's place in the run (staged copies keep it) */
	uint16_t rec_len;
	uint8_t dev_len;
};

/* An index entry to write: card key -> token value, for run row idx. */
struct ientry {
	uint8_t card_key[CARD_KEY_BYTES];
	uint64_t key;
	uint64_t idx;
};

struct sort_item {
	uint64_t key;
	uint64_t idx;
};

struct reject {
	unsigned long line;
	int err;
	const char *reason;
};

/* One chunk's slots and records, copied in token order. */
struct stage {
	struct slot *slots;
	uint8_t *bytes;
	size_t rows_cap, bytes_cap;
	unsigned n;
	unsigned chunk; /* which chunk it holds */
	bool ready;	/* staged and not yet written */
};

/* Sort memory per run row besides its record: slot, index entry, four
 * sort items and a bit. */
#define RUN_ROW_FIXED_BYTES                                                                        \
	(sizeof(struct slot) + sizeof(struct ientry) + 4 * sizeof(struct sort_item) + 1)
#define RUN_ROW_MAX_BYTES (REC_MAX_BYTES + TSW_DEVICE_REF_MAX)

/* Rows sealed and encoded, waiting for their write. The arrays are
 * reserved address space (untouched pages cost nothing); the rows a run
 * holds are bounded by mem_limit bytes of fixed slots plus records. */
struct run {
	struct slot *slots;
	uint8_t *arena; /* records, then device refs */
	unsigned n, cap;
	size_t used; /* arena bytes; read by the filling thread's helper (atomic) */
	size_t mem_limit;
	/* the write's workspace */
	struct sort_item *items, *scratch;	     /* token order */
	struct sort_item *card_items, *card_scratch; /* card order, sorted meanwhile */
	struct ientry *ientries;		     /* every row, sorted by card key */
	uint8_t *indexed;			     /* bit per row: its index entry is due */
	struct stage stages[2];
	pthread_mutex_t lock; /* the stages, between writer and stager */
	pthread_cond_t cond;
	bool abort; /* the writer failed: the stager stops */
	int stage_err;
	bool index_ready;
	/* what the last write did */
	unsigned long imported, chunks;
	struct reject *rejects;
	size_t n_rejects, cap_rejects;
};

/* Reserves a run of at most mem_limit bytes. Returns 0 or -ENOMEM. */
int vault__run_init(struct run *run, size_t mem_limit);
/* Wipes and frees what vault__run_init reserved (also after a failed init). */
void vault__run_free(struct run *run);
/* True when one more row of the largest size might not fit. */
bool vault__run_full(const struct run *run);
/* The import rate (tsw_vault_set_import_rate) as the writer keeps it:
 * items a second, where a row is two items (its record, its index
 * entry), and when the next transaction may start. */
struct pace {
	uint64_t items_per_s; /* 0: unlimited */
	uint64_t due_ns;      /* CLOCK_MONOTONIC; 0: the first transaction */
	uint64_t waited_ns;   /* slept so far */
};

/* Sleeps until the transaction about to write items items may start,
 * then books them. */
void vault__pace_wait(struct pace *p, uint64_t items);

/* Writes the run's rows into v, sorted, chunk_rows per transaction:
 * records first (appended where they come after the vault's last token),
 * then their index entries sorted by card key. A second thread copies
 * each chunk into token order while this one writes the previous chunk;
 * a third sorts the index entries meanwhile. Each transaction first
 * waits for pace. Fills run->imported, chunks and rejects. Returns 0 or
 * a negative error (chunks committed before it stay). */
int vault__run_write(struct tsw_vault *v, struct run *run, unsigned chunk_rows, struct pace *pace);
/* Empties the run (wipes its records) for the next rows. */
void vault__run_reset(struct run *run);

#endif
