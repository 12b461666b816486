/* Codec micro-benchmark: decode + replace DE2/DE14 + encode of a typical
 * ~250-byte 0100 in the default profile; also decode alone and the frame
 * reader. Prints the median ns/message of RUNS runs of ITERS messages.
 *
 *   bench_codec [ITERS [RUNS]]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tsw/error.h"
#include "tsw/iso8583.h"

#define BENCH_ITERS_DEFAULT 1000000
#define BENCH_RUNS_DEFAULT 9
#define BENCH_RUNS_MAX 101
#define BENCH_MSG_CAP 1024
#define BENCH_STREAM_MSGS 64

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* A tokenized e-commerce/chip 0100 as an acquirer sends it. */
static int build_0100(const struct tsw_iso_profile *p, uint8_t *out, size_t cap)
{
	static const uint8_t chip[] = {0x9f, 0x26, 0x08, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
				       0x77, 0x88, 0x9f, 0x27, 0x01, 0x80, 0x9f, 0x10, 0x07,
				       0x06, 0x01, 0x0a, 0x03, 0xa0, 0x00, 0x00, 0x9f, 0x37,
				       0x04, 0x12, 0x34, 0x56, 0x78, 0x9f, 0x36, 0x02, 0x00,
				       0x2a, 0x95, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00};
#define E(f, s)                                                                                    \
	{                                                                                          \
		f, sizeof(s) - 1, (const uint8_t *)s                                               \
	}
	const struct tsw_iso_edit e[] = {
	    E(0, "0100"),
	    E(2, "4895370012345678"),
	    E(3, "000000"),
	    E(4, "000000012500"),
	    E(7, "1123101530"),
	    E(11, "123456"),
	    E(12, "101530"),
	    E(13, "1123"),
	    E(14, "2712"),
	    E(18, "5411"),
	    E(22, "071"),
	    E(25, "00"),
	    E(32, "12345678901"),
	    E(35, "4895370012345678=27121011234500000"),
	    E(37, "332710123456"),
	    E(41, "TERM0001"),
	    E(42, "MERCHANT0000001"),
	    E(43, "TOKSWITCH TEST SHOP    PARIS          FR"),
	    E(48, "1008DEVICE01110828A1B2C3"),
	    E(49, "978"),
	    {55, sizeof(chip), chip},
	};
#undef E
	return tsw_iso_encode(p, NULL, e, sizeof(e) / sizeof(e[0]), out, cap);
}

/* Sorts v; returns the median (v[0] is then the fastest run). */
static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[n / 2];
}

int main(int argc, char **argv)
{
	struct tsw_iso_profile p;
	static uint8_t msg[BENCH_MSG_CAP], out[BENCH_MSG_CAP];
	static uint8_t stream[BENCH_STREAM_MSGS * (BENCH_MSG_CAP + 2)];
	double t_full[BENCH_RUNS_MAX], t_dec[BENCH_RUNS_MAX], t_frame[BENCH_RUNS_MAX];
	double m_full, m_dec, m_frame;
	long iters = argc > 1 ? atol(argv[1]) : BENCH_ITERS_DEFAULT;
	int runs = argc > 2 ? atoi(argv[2]) : BENCH_RUNS_DEFAULT;
	const struct tsw_iso_edit swap[] = {
	    {2, 19, (const uint8_t *)"5500000000000000004"},
	    {14, 4, (const uint8_t *)"2901"},
	};
	struct tsw_iso_framer fr;
	size_t stream_len = 0;
	volatile size_t sink = 0;
	int len, r;

	if (iters <= 0 || runs <= 0 || runs > BENCH_RUNS_MAX) {
		fprintf(stderr, "usage: bench_codec [ITERS [RUNS<=%d]]\n", BENCH_RUNS_MAX);
		return 2;
	}
	r = tsw_iso_profile_load_named(NULL, "default", &p);
	if (r < 0) {
		fprintf(stderr, "profile: %s\n", tsw_strerror(r));
		return 1;
	}
	len = build_0100(&p, msg, sizeof(msg));
	if (len < 0) {
		fprintf(stderr, "build: %s\n", tsw_strerror(len));
		return 1;
	}
	for (int i = 0; i < BENCH_STREAM_MSGS; i++) {
		tsw_iso_header_write(&p, (size_t)len, stream + stream_len);
		memcpy(stream + stream_len + 2, msg, (size_t)len);
		stream_len += (size_t)len + 2;
	}
	if (tsw_iso_framer_init(&fr, &p) < 0)
		return 1;

	for (int k = 0; k < runs; k++) {
		struct tsw_iso_msg m;
		double t0 = now_ns();

		for (long i = 0; i < iters; i++) {
			if (tsw_iso_decode(&p, msg, (size_t)len, &m) < 0)
				return 1;
			r = tsw_iso_encode(&p, &m, swap, 2, out, sizeof(out));
			if (r < 0)
				return 1;
			sink += (size_t)r;
		}
		t_full[k] = (now_ns() - t0) / (double)iters;

		t0 = now_ns();
		for (long i = 0; i < iters; i++) {
			if (tsw_iso_decode(&p, msg, (size_t)len, &m) < 0)
				return 1;
			sink += m.f[2].len;
		}
		t_dec[k] = (now_ns() - t0) / (double)iters;

		t0 = now_ns();
		for (long i = 0; i < iters / BENCH_STREAM_MSGS; i++) {
			size_t off = 0, flen;
			const uint8_t *f;

			while (tsw_iso_framer_next(&fr, stream, stream_len, &off, &f, &flen) == 1)
				sink += flen;
		}
		t_frame[k] =
		    (now_ns() - t0) / (double)(iters / BENCH_STREAM_MSGS * BENCH_STREAM_MSGS);
	}
	tsw_iso_framer_free(&fr);
	printf("message: 0100, %d bytes, default profile; %ld iterations x %d runs (median)\n", len,
	       iters, runs);
	m_full = median(t_full, runs);
	m_dec = median(t_dec, runs);
	m_frame = median(t_frame, runs);
	printf("decode + replace DE2/DE14 + encode: %.1f ns/msg (fastest run %.1f)\n", m_full,
	       t_full[0]);
	printf("decode only:                         %.1f ns/msg (fastest run %.1f)\n", m_dec,
	       t_dec[0]);
	printf("frame reader (in place):             %.1f ns/msg (fastest run %.1f)\n", m_frame,
	       t_frame[0]);
	return sink == 0;
}
