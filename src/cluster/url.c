/* What a cluster url says, in every build (with or without libnats). */
#include <string.h>

#include "tsw/cluster.h"

#define TLS_SCHEME "tls://"

bool tsw_cluster_url_plaintext(const char *url)
{
	const char *p = url;

	/* one server of the list without TLS is enough to be read on the path */
	for (;;) {
		while (*p == ' ')
			p++;
		if (strncmp(p, TLS_SCHEME, strlen(TLS_SCHEME)) != 0)
			return true;
		p = strchr(p, ',');
		if (!p)
			return false;
		p++;
	}
}
