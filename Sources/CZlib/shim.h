// zlib (Debian zlib1g-dev): DEFLATE in the zlib wrapper (RFC 1950/1951) for the compressed
// uplink batch encoding.
#include <zlib.h>
