/* Engine internals shared by the files of src/engine (not installed). */
#ifndef TSW_ENGINE_INT_H
#define TSW_ENGINE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "event.h"
#include "tsw/authz.h"
#include "tsw/config.h"
#include "tsw/engine.h"
#include "tsw/iso8583.h"
#include "tsw/metrics.h"
#include "tsw/state.h"
#include "tsw/token.h"

/* The least link_buf_bytes raised to when it cannot hold two frames. */
#define TSW_ENGINE_LINK_BUF_MIN (256u * 1024)
/* Reversals claimed from the state per call (a claim scans the queue). */
#define TSW_ENGINE_SAF_CLAIM_BATCH 16u
/* Reversals in flight never take more than 1/N of the pending table. */
#define TSW_ENGINE_SAF_PENDING_SHARE 2u
/* DE11 values (6 digits), split evenly between the workers (pending.c). */

/* n_workers 0: the space is split as for this many workers. */
#define TSW_ENGINE_STAN_WORKERS_DEFAULT 10u
/* The span of each worker with the default split. */
#define TSW_ENGINE_STAN_SPAN (TSW_ENGINE_STAN_SPACE / TSW_ENGINE_STAN_WORKERS_DEFAULT)
/* Bytes kept per request for the echo fields of a local answer. */
#define TSW_ENGINE_ECHO_BYTES 160u
#define TSW_ENGINE_ECHO_FIELDS 11u
/* Scratch space for a rewritten DE48 / DE35. */
#define TSW_ENGINE_DE48_MAX 999u
/* ... and for an answer's DE55 stripped of card-data tags: 999 bytes,
 * and the room tsw_tlv_copy_except reserves for the head of each
 * constructed object it enters (at most 8 bytes a level) */
#define TSW_ENGINE_DE55_MAX (999u + 8u * (TSW_TLV_DEPTH_MAX + 1u))
#define TSW_ENGINE_DE35_MAX 64u

#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull

/* Adds to_ns - from_ns to h (0 when to_ns is not after from_ns: two
 * clocks read on one thread never go back, but a test's may). */
static inline void hist_between(struct tsw_hist *h, uint64_t from_ns, uint64_t to_ns)
{
	tsw_hist_add_ns(h, to_ns > from_ns ? to_ns - from_ns : 0);
}

/* metrics.h keeps its own count (it is the shard layout the control
 * plane reads, and stays free of the config) */
_Static_assert(TSW_METRICS_LINKS_MAX == TSW_CONFIG_LINKS_MAX,
	       "the metrics have a gauge for every link the config allows");

/* Fields a local answer echoes from the request (DESIGN.md: never DE35). */
extern const uint8_t tsw_engine_echo_fields[TSW_ENGINE_ECHO_FIELDS];
#define ECHO_IDX_DE11 4

struct echo {
	uint8_t len[TSW_ENGINE_ECHO_FIELDS]; /* 0: absent */
	uint8_t off[TSW_ENGINE_ECHO_FIELDS];
	uint8_t data[TSW_ENGINE_ECHO_BYTES];
	char mti[4];
};

/* An output buffer: bytes [head, tail) wait to be sent; [head, head +
 * busy) are with the backend (a send in flight) and must not move. */
struct outbuf {
	uint8_t *data;
	uint32_t cap, head, tail, busy;
	bool queued;  /* in the dirty queue */
	uint64_t pos; /* stream offset of data[head]: bytes reported sent so far */
};

enum acq_state { ACQ_FREE, ACQ_OPEN, ACQ_STATE_MAX };

struct acq_conn {
	struct tsw_iso_framer fr;
	struct outbuf out;
	uint8_t *stash; /* input held back while the connection is paused */
	uint32_t stash_off, stash_len;
	uint32_t gen;
	uint32_t inflight;
	uint64_t peer_id; /* hash of the peer's address (acq_reversal.c), 0: unknown */
	/* approvals written but not yet sent, oldest first (delivery.c) */
	uint32_t unsent_head, unsent_tail;
	uint64_t last_active_ns;
	uint8_t state; /* enum acq_state */
	bool close_queued;
	bool feeding;
	bool was_paused;
	/* acq_input.c: input may go on (a request is done), fed before the
	 * engine returns; resume_next chains e->resume_head (slot + 1, 0: end) */
	bool resume_due;
	uint32_t resume_next;
	/* the backend was told to hold this connection's input
	 * (tsw_engine_acq_hold): it is owed a release */
	bool hold_told;
	bool release_queued;
	uint32_t release_next; /* chains e->release_head like resume_next */
};

enum link_state {
	LINK_DOWN,
	LINK_CONNECTING,
	LINK_UP, /* connected, sign-on sent */
	LINK_SIGNED_ON,
	LINK_STATE_MAX
};

struct issuer_link {
	struct tsw_iso_framer fr;
	struct outbuf out;
	uint8_t state; /* enum link_state */
	uint32_t backoff_ms;
	uint64_t retry_at_ns;
	uint64_t last_tx_ns;
	uint32_t mgmt_stan; /* outstanding sign-on or echo, 0: none */
	uint64_t mgmt_deadline_ns;
	bool mgmt_is_echo;
	uint32_t pending;      /* requests waiting on this link */
	uint32_t saf_inflight; /* of which store-and-forward reversals */
	uint8_t issuer;	       /* cfg.hosts[link].issuer */
	uint64_t last_pos;     /* the frame engine__link_write appended last: its stream offset */
	uint32_t last_len;     /* ... and length */
};

enum req_kind {
	REQ_ACQ, /* forwarded for an acquirer connection */
	REQ_SAF, /* a reversal sent from the store-and-forward queue */
	REQ_KIND_MAX
};

/* The original an acquirer reversal matched (acq_reversal.c): its hash
 * in the table and its switch STAN; hash 0: none. */
struct acq_rev_match {
	uint64_t hash;
	uint32_t stan;
};

/* A verified ARQC, for the tag 91 of its answer (card_crypto.c). */
struct card_arpc {
	struct tsw_card_keys *keys; /* a reference; NULL: no tag 91 owed */
	uint32_t key;		    /* the IMK it verified under: its index in keys */
	uint8_t cvn, psn;
	uint8_t arqc[8], atc[2], un[4];
};

/* A request in flight to an issuer (or parked until its use is durable). */
struct req {
	uint64_t key; /* link << 32 | switch STAN */
	uint64_t start_ns, fwd_ns, deadline_ns;
	uint64_t ticket;
	uint32_t acq_slot, acq_gen;
	uint32_t heap_idx;
	uint32_t next_free;
	uint32_t saf_attempts; /* REQ_SAF: earlier claims of the item */
	uint64_t saf_id;       /* REQ_SAF: the state's SAF id */
	uint16_t link;
	uint8_t kind;	   /* enum req_kind */
	uint8_t mti_class; /* enum tsw_mti_class */
	bool has_ticket;
	bool in_use;
	char token[TSW_TOKEN_MAX_DIGITS];
	uint8_t token_len;
	char token_expiry[4];
	bool has_token_expiry;
	uint8_t pan_len;  /* REQ_ACQ: digits of the PAN sent (answer_guard.c) */
	uint64_t pan_fp;  /* REQ_ACQ: its keyed fingerprint, never the PAN */
	char pan_last4[4]; /* REQ_ACQ: its last 4 digits (shown by masking too): scan filter */
	uint64_t acq_rev_key; /* REQ_ACQ: acq_reversal.c key of the acquirer's message */
	bool use_flagged;     /* REQ_ACQ: engine__acq_rev_use_consumed set its original's flag */
	struct acq_rev_match rev_match; /* REQ_ACQ reversal: the original it named */
	bool partial_reversal; /* REQ_ACQ: a reversal whose DE95 keeps part of the sale */
	bool advised;	       /* REQ_ACQ: a stand-in approval whose advice is queued */
	uint64_t dup_hash; /* REQ_ACQ: dup.c chain of (connection, DE11, DE7) */
	uint32_t dup_next;
	bool in_dup;
	/* REQ_ACQ after its answer (delivery.c): held until hold_id is
	 * durable, or kept until out_end of its connection's output is sent;
	 * list_next chains either FIFO. hold_until_ns also bounds an approval
	 * held for its state record (held_approval.c) */
	uint64_t hold_id;
	uint64_t hold_until_ns;
	uint64_t out_end;
	uint32_t list_next;
	uint8_t hold_reason; /* enum tsw_authz_reason */
	bool has_approval_code;
	char approval_code[6]; /* the issuer's DE38 (or the stand-in's own): a reversal
				* of the approval names it */
	uint64_t link_pos; /* REQ_ACQ: its frame in r->link's output stream */
	uint32_t link_len; /* (engine__link_track; 0: not tracked, never moved) */
	/* REQ_ACQ: what a stand-in at its timeout is judged by (standin.c) */
	uint8_t pos_mode;    /* enum tsw_pos_mode; TSW_POS_MODE_MAX: unknown */
	uint8_t assurance;   /* the token's assurance level */
	bool has_pin;	     /* it carries a PIN block (DE52) */
	bool sent_to_issuer; /* the issuer saw it under the switch STAN of key */
	struct card_arpc arpc; /* REQ_ACQ: its verified ARQC (zeroed with the rest) */
	/* REQ_ACQ forwarded before its state record (limited use, ATC) was
	 * durable (held_approval.c): that record's ticket, and the slot its
	 * approval waits in (index + 1; 0: none) */
	uint64_t rec_ticket;
	uint32_t appr_slot;
	struct echo echo;
};

/* A timed-out key; saf_id: the reversal it carried (0: a request). */
struct expired_key {
	uint64_t key, saf_id;
};

/* A deadline heap entry: the deadline is kept next to the index so that
 * sifting compares within the heap array instead of reading requests. */
struct heap_ent {
	uint64_t deadline_ns;
	uint32_t req;
};

struct pend_slot {
	uint64_t key;
	uint32_t req;  /* UINT32_MAX: empty */
	uint32_t home; /* slot_of(key): deletion shifts without rehashing */
};

struct tsw_engine {
	/* the settings (tsw_engine_config.settings, buffers raised to what a
	 * frame needs), a reload's keys applied (tsw_engine_reconfigure) */
	struct tsw_config cfg;
	const struct tsw_iso_profile *acq_profile, *iss_profile;
	uint32_t worker_id, n_workers; /* tsw_engine_config's */
	struct tsw_vault *vault;
	struct tsw_vault_reader *reader;
	struct tsw_state *state;
	struct tsw_metrics_shard *m;
	uint64_t now_ns;
	tsw_engine_clock_fn clock_ns; /* the latency histograms' (tsw_engine_config) */
	void *clock_arg;
	int64_t wall_s; /* unix seconds at the last loop_begin/tick */
	uint64_t rng;	/* xorshift64 state */
	bool reader_live;
	uint64_t pan_fp_seed; /* secret key of the PAN fingerprints */

	/* acquirer connections */
	struct acq_conn *conns;
	uint32_t *free_conns;
	uint32_t n_free_conns;
	uint32_t *close_q;
	uint32_t close_head, close_len;
	uint64_t next_idle_scan_ns;
	/* connections to resume, and those whose input the backend may
	 * release (acq_input.c): lists through the connections, slot + 1
	 * (0: empty), so that they need no allocation */
	uint32_t resume_head, resume_tail;
	uint32_t release_head, release_tail;

	/* issuer links: one per host, each serving one issuer */
	struct issuer_link links[TSW_CONFIG_LINKS_MAX];
	uint32_t n_links;
	uint32_t pick_next; /* engine__pick_link: where the next scan starts (ties rotate) */

	/* dirty endpoints (ring of max_conns + n_links) */
	struct tsw_endpoint *dirty;
	uint32_t dirty_cap, dirty_head, dirty_len;

	/* requests, pending table, deadline heap */
	struct req *reqs;
	uint32_t n_reqs, free_req, reqs_used;
	struct pend_slot *table;
	uint32_t table_mask;
	struct heap_ent *heap;
	uint32_t heap_len;
	struct expired_key *expired; /* direct-mapped memory of timed-out keys */
	uint32_t expired_mask;	     /* cfg.expired_stan_memory - 1 */
	uint32_t stan_seq;
	uint32_t *dup_heads; /* dup.c: requests in flight by (connection, DE11, DE7) */
	uint32_t dup_mask;
	struct tsw_acq_reversals *acq_rev;     /* acq_reversal.c: originals by acquirer key */
	struct tsw_acq_reversals *acq_rev_own; /* the engine's own, without a shared one */

	/* store-and-forward reversals (saf.c; the queue is the state's) */
	struct tsw_saf_item *saf_items; /* claim buffer, TSW_ENGINE_SAF_CLAIM_BATCH */
	uint8_t *saf_buf;		/* a token-form 0400 being built */
	uint32_t saf_inflight;		/* REQ_SAF requests, every link */
	uint64_t saf_next_poll_ns;
	uint64_t saf_last_id; /* the last put (tests wait for its durability) */

	/* answers held until their reversal (or stand-in advice) is durable
	 * (delivery.c) */
	uint32_t held_head, held_tail, n_held;

	/* stand-in (standin.c) */
	struct tsw_standin_exposure *standin_exp;     /* shared by every worker */
	struct tsw_standin_exposure *standin_exp_own; /* without a shared one */
	uint32_t standin_seq;			      /* approval codes handed out */
	/* the event log: what the backend logs after the loop iteration (event.c) */
	struct engine_events ev;

	/* card cryptography (card_crypto.c): this worker's HSM session and
	 * its reference on the shared key set (NULL: none configured) */
	struct tsw_hsm *hsm;
	struct tsw_hsm_session *hsm_s;
	struct tsw_card_keys *card_keys;

	/* approvals waiting for their state record (held_approval.c):
	 * slots, the free ones, and those holding an answer (request
	 * indices) */
	struct appr_slot *appr_slots;
	uint32_t *appr_free, *appr_list;
	uint32_t n_appr_free, n_appr_list;

	/* limited-use requests waiting for a durable reservation (use.c) */
	struct parked *parked;
	uint32_t *park_list, *park_free;
	uint32_t n_parked, n_park_free;
};

/* outbuf.c */
int engine__outbuf_init(struct outbuf *b, uint32_t cap);
void engine__outbuf_free(struct outbuf *b);
void engine__outbuf_reset(struct outbuf *b);
uint32_t engine__outbuf_pending(const struct outbuf *b);
/* Encodes base with edits ed (base NULL: edits alone) as one frame of
 * profile p after b's tail. 0; -TSW_E_NO_SPACE when b has no room for it
 * now (the peer is behind); -TSW_E_FRAME_TOO_BIG when it exceeds
 * p->max_frame; else the encoder's error. On error nothing is appended. */
int engine__outbuf_encode(struct outbuf *b, const struct tsw_iso_profile *p,
			  const struct tsw_iso_msg *base, const struct tsw_iso_edit *ed,
			  unsigned n);
/* Appends len bytes already framed; 0 or -TSW_E_NO_SPACE (nothing
 * appended). engine__outbuf_unput takes the last len bytes back (wiped). */
int engine__outbuf_put(struct outbuf *b, const uint8_t *data, uint32_t len);
void engine__outbuf_unput(struct outbuf *b, uint32_t len);
/* The backend sent n bytes from the head (at most what is pending; it
 * returns how many it took): they leave the buffer (wiped first when
 * wipe), and nothing is busy any more. */
size_t engine__outbuf_consume(struct outbuf *b, size_t n, bool wipe);

/* dirty.c: queues the endpoint for the backend when it has bytes to send */
void engine__mark_dirty(struct tsw_engine *e, uint8_t kind, uint32_t slot);
/* The output buffer of an endpoint, NULL for none (dirty.c, sent.c). */
static inline struct outbuf *ep_buf(struct tsw_engine *e, struct tsw_endpoint ep)
{
	if (ep.kind == TSW_EP_ACQ) {
		if (ep.slot >= e->cfg.max_conns)
			return NULL;
		return &e->conns[ep.slot].out;
	}
	if (ep.kind == TSW_EP_LINK && ep.slot < e->n_links)
		return &e->links[ep.slot].out;
	return NULL;
}

/* pending.c */
int engine__pending_init(struct tsw_engine *e);
void engine__pending_free(struct tsw_engine *e);
struct req *engine__req_alloc(struct tsw_engine *e);
void engine__req_free(struct tsw_engine *e, struct req *r);
/* r's acquirer connection is still the one it came on (open, same
 * generation): what it is owed can still be written there. */
static inline bool req_conn_alive(const struct tsw_engine *e, const struct req *r)
{
	const struct acq_conn *c = &e->conns[r->acq_slot];

	return c->state == ACQ_OPEN && c->gen == r->acq_gen;
}

static inline uint32_t req_index(const struct tsw_engine *e, const struct req *r)
{
	return (uint32_t)(r - e->reqs);
}
/* Picks an unused switch STAN for link and inserts r under it; returns 0
 * or -TSW_E_FULL. */
int engine__pending_insert(struct tsw_engine *e, struct req *r, uint16_t link);
/* Moves r, pending, to link under the same switch STAN; 0, or
 * -TSW_E_FULL when that STAN is in flight (or remembered) on link. */
int engine__pending_rekey(struct tsw_engine *e, struct req *r, uint16_t link);
struct req *engine__pending_find(struct tsw_engine *e, uint64_t key);
void engine__pending_remove(struct tsw_engine *e, struct req *r);
void engine__heap_push(struct tsw_engine *e, struct req *r);
void engine__heap_remove(struct tsw_engine *e, struct req *r);
struct req *engine__heap_top(const struct tsw_engine *e);
void engine__expired_remember(struct tsw_engine *e, uint64_t key, uint64_t saf_id);
/* True when key timed out recently (once); *ret_saf_id is the reversal
 * it carried or 0. */
bool engine__expired_take(struct tsw_engine *e, uint64_t key, uint64_t *ret_saf_id);
uint32_t engine__stan_next(struct tsw_engine *e, uint16_t link);
/* STANs per worker: TSW_ENGINE_STAN_SPACE / n_workers (0: as for
 * TSW_ENGINE_STAN_WORKERS_DEFAULT). */
uint32_t engine__stan_span(const struct tsw_engine_config *cfg);

/* link_input.c */
void engine__link_tick(struct tsw_engine *e, uint32_t link);
uint64_t engine__link_next_deadline(const struct tsw_engine *e, uint32_t link);

/* link_output.c */
int engine__link_send_mgmt(struct tsw_engine *e, uint32_t link, const char *code3, bool echo);
/* Encodes base with edits ed (base NULL: edits alone) as one frame on the
 * link and marks it for sending; 0 or engine__outbuf_encode's error
 * (-TSW_E_NO_SPACE: output full, counted in link_out_full). */
int engine__link_write(struct tsw_engine *e, uint32_t link, const struct tsw_iso_msg *base,
		       const struct tsw_iso_edit *ed, unsigned n);
/* Notes where the frame engine__link_write just appended for r (on r->link) lies,
 * so that a link going down before it is sent hands it to another host
 * of the issuer instead of failing it. */
void engine__link_track(struct tsw_engine *e, struct req *r);
/* The issuer index for a PAN (-1: no route). */
int engine__route(const struct tsw_engine *e, const char *pan, size_t pan_len);
/* The issuer link serves (its reversals' route_key). */
static inline uint32_t link_issuer(const struct tsw_engine *e, uint32_t link)
{
	return e->links[link].issuer;
}
/* The signed-on link of issuer with the fewest requests in flight (ties
 * take turns), or -1 when none is signed on: the issuer is unavailable. */
int engine__pick_link(struct tsw_engine *e, uint32_t issuer);
/* A request whose frame never left the switch (not handed to the backend
 * either) when its link went down moves to another signed-on host of its
 * issuer; false when it cannot (link_input.c then fails it). */
bool engine__move_unsent(struct tsw_engine *e, struct req *r);

/* rewrite.c (the DE48 and DE35 rewrites: rewrite.h) */
void engine__fmt_de7(int64_t wall_s, char out[10]);
void engine__fmt6(uint32_t v, char out[6]);

/* saf.c: store-and-forward reversals in the state's durable queue */
int engine__saf_buffers_alloc(struct tsw_engine *e);
void engine__saf_buffers_free(struct tsw_engine *e);
/* Queues the reversal of r (a 0100/0200 whose outcome at the issuer is
 * unknown, or whose approval the acquirer never got) in token form, with
 * DE38 when r has the issuer's approval code; return_use: the ack gives
 * r's limited use back (tsw_state_saf_put_use). 0 and *ret_id; -ENOTSUP
 * without a state, or the state's error (-EAGAIN: full); every failure is
 * counted in saf_dropped. */
int engine__saf_put(struct tsw_engine *e, const struct req *r, bool return_use, uint64_t *ret_id);
/* Queues the advice of stand-in approval r (r->approval_code): a
 * token-form 0120 (0220 for a 0200) with DE38 and DE39 00. 0 and
 * *ret_id; -ENOTSUP without a state, or the state's error (-EAGAIN:
 * full). Not counted in saf_dropped (the stand-in counts its refusal). */
int engine__saf_put_advice(struct tsw_engine *e, const struct req *r, uint64_t *ret_id);
/* Claims due reversals for every signed-on link and sends them. */
void engine__saf_poll(struct tsw_engine *e);
/* The issuer answered reversal r (DE39 rc) / it timed out or its link
 * went down. Both end the request's tracking, not r itself. */
void engine__saf_answered(struct tsw_engine *e, struct req *r, const char *rc);
void engine__saf_failed(struct tsw_engine *e, struct req *r);
/* An answer to reversal id after its timeout: settles it all the same. */
void engine__saf_late_answer(struct tsw_engine *e, uint64_t id, const char *rc);
/* The next poll (UINT64_MAX: nothing to poll for). */
uint64_t engine__saf_next_deadline(const struct tsw_engine *e);

/* acq_input.c and answer.c (inline: it reads every issuer answer's DE11) */
static inline bool is_digits(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] < '0' || p[i] > '9')
			return false;
	return true;
}

/* metrics.c */
unsigned engine__mti_class(const char mti[4]);
void engine__count_answer(struct tsw_engine *e, unsigned cls, const char *rc);
/* Counts what became of stand-in candidate r and tells the operator
 * (TSW_EV_STANDIN, rate-limited with every event). */
void engine__standin_decided(struct tsw_engine *e, const struct req *r,
			     enum tsw_standin_result res);

/* acq_reply.c */
void engine__echo_from_msg(struct echo *ec, const struct tsw_iso_msg *m);
int engine__conn_write(struct tsw_engine *e, uint32_t slot, const struct tsw_iso_msg *base,
		       const struct tsw_iso_edit *ed, unsigned n_ed);
int engine__answer_local(struct tsw_engine *e, uint32_t slot, const struct echo *ec, const char *rc,
			 const char *reason);
int engine__decline(struct tsw_engine *e, uint32_t slot, const struct echo *ec,
		    enum tsw_authz_reason reason);
/* The stand-in approval of ec: DE39 00, DE38 code, DE44 STANDIN (counted
 * as an approval). engine__conn_write's result. */
int engine__answer_standin(struct tsw_engine *e, uint32_t slot, const struct echo *ec,
			   const char code[6]);
/* The 0810 (DE39 00) to an acquirer's network message m. */
int engine__answer_network(struct tsw_engine *e, uint32_t slot, const struct tsw_iso_msg *m);
/* Queues connection slot for tsw_engine_next_close (once). */
void engine__conn_queue_close(struct tsw_engine *e, uint32_t slot);
/* A request of connection slot (generation gen) is done: one fewer in
 * flight, and the connection resumes (engine__acq_resume_later). */
void engine__conn_request_done(struct tsw_engine *e, uint32_t slot, uint32_t gen);
/* Connection slot may take input again: acq_input.c resumes it before the
 * engine returns to the backend (acq_resume_due), never from inside the
 * pipeline, which would re-enter input handling. */
void engine__acq_resume_later(struct tsw_engine *e, uint32_t slot);

/* acq_input.c */
/* Feeds the stash of connection slot while it may take input; a
 * connection the backend holds input for is then owed a release. */
void engine__resume(struct tsw_engine *e, uint32_t slot);
void engine__acq_resume_due(struct tsw_engine *e);
/* At the end of each entry point that can complete requests: resumes the
 * connections engine__acq_resume_later noted (inline: usually none). */
static inline void acq_resume_due(struct tsw_engine *e)
{
	if (e->resume_head)
		engine__acq_resume_due(e);
}
void engine__idle_scan(struct tsw_engine *e, uint64_t now_ns);

/* request.c (engine__request: use.h) */
int engine__reader_ensure(struct tsw_engine *e);

/* answer.c */
/* timed_out: 1 for a timeout, 0 for a link that went down */
void engine__req_fail(struct tsw_engine *e, struct req *r, int timed_out);
void engine__issuer_answer(struct tsw_engine *e, uint32_t link, const struct tsw_iso_msg *m);
/* The issuer's answer m (DE39 rc) to r, out of the pending table, goes to
 * its acquirer (settling its use; an approval the acquirer cannot get is
 * reversed). Frees r, or keeps it until its approval is sent. */
void engine__answer_finish(struct tsw_engine *e, struct req *r, const struct tsw_iso_msg *m,
			   const char *rc);
/* Settles the approvals held for their state record (held_approval.c)
 * that may wait no longer. Cheap when none is held. */
void engine__approval_poll(struct tsw_engine *e);
/* The same answer is not delivered: the acquirer gets reason (96)
 * instead, after the reversal of an approval is durable (delivery.c). */
void engine__answer_refused(struct tsw_engine *e, struct req *r, const struct tsw_iso_msg *m,
			    const char *rc, enum tsw_authz_reason reason);

#endif
