/* The issuer simulator's server: one io_uring loop that accepts any number
 * of connections, answers each request on the connection it came from
 * (works behind 1:1 proxies and behind a multiplexed switch link), holds
 * answers back in a heap for simulated latency, and injects faults. */
#ifndef TSW_TOOLS_SIM_H
#define TSW_TOOLS_SIM_H

#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "answer.h"

#define SIM_MAX_CONNS_DEFAULT 4096
#define SIM_MAX_DELAYED_DEFAULT 1000000 /* answers held for latency at once */
#define SIM_LISTEN_BACKLOG 1024
#define SIM_IDLE_WAIT_NS 100000000ull /* longest ring wait: signal checks */

enum sim_latency_kind { SIM_LAT_FIXED, SIM_LAT_UNIFORM, SIM_LAT_EXP, SIM_LAT_MAX };

struct sim_config {
	struct sockaddr_in listen;
	struct sim_rules rules;
	uint8_t latency_kind;  /* enum sim_latency_kind */
	uint64_t latency_a_us; /* fixed value, uniform low bound, exp mean */
	uint64_t latency_b_us; /* uniform high bound */
	double drop_pct;       /* share of requests not answered, 0..100 (never 08xx) */
	double late_pct;       /* share answered late_ms later, 0..100 (never 08xx) */
	uint64_t late_ms;
	uint64_t close_after; /* close a connection after N requests; 0: never */
	bool refuse;	      /* close every accepted connection at once */
	uint32_t max_conns;
	uint32_t max_delayed;
	uint64_t seed;
	const char *profile; /* profile name ("default"), or a path with a '/' */
	struct sim_pin *pin; /* NULL: DE52 not checked */
};

struct sim_counts {
	uint64_t conns;	   /* accepted and served */
	uint64_t refused;  /* closed at once: --refuse or max_conns */
	uint64_t requests; /* frames that decoded as a message */
	uint64_t answered;
	uint64_t declined;     /* answered with DE39 other than 00 */
	uint64_t dropped;      /* --drop-pct */
	uint64_t late;	       /* --late-pct */
	uint64_t closed_after; /* connections closed by --close-after */
	uint64_t malformed;    /* frames that failed to decode, broken framing */
	uint64_t ignored;      /* messages an issuer does not answer */
	uint64_t overflow;     /* answers lost: output queue or delay heap full */
};

/* Parses "N" (µs), "uniform:A:B" or "exp:MEAN" into cfg. Returns 0 or
 * -TSW_E_BAD_INPUT. */
int sim_latency_parse(struct sim_config *cfg, const char *spec);

void sim_config_init(struct sim_config *cfg);

/* Binds and listens on cfg->listen. Returns the fd, or -errno. The bound
 * address (port 0 resolved) goes to *ret_bound. */
int sim_listen(const struct sim_config *cfg, struct sockaddr_in *ret_bound);

/* Serves listen_fd until *stop becomes non-zero. Counts go to *ret_counts
 * (also on failure, as far as it got). Returns 0, or -errno when the ring
 * cannot be set up or fails, -TSW_E_BAD_PROFILE / -errno when the profile
 * cannot be loaded. Closes listen_fd. */
int sim_run(const struct sim_config *cfg, int listen_fd, volatile sig_atomic_t *stop,
	    struct sim_counts *ret_counts);

#endif
