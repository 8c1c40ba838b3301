// C helpers for `vigilctl diagnose`: certificate inspection and a TLS client handshake over the
// system OpenSSL (libssl3/libcrypto3, which libmosquitto already links for TLS), and the kernel
// clock state. Plain C because most of what is needed is macros or structs Swift cannot import.
#ifndef CVIGILDIAGNOSE_H
#define CVIGILDIAGNOSE_H

#include <stddef.h>
#include <stdint.h>

/// What a PEM certificate file holds (its first certificate).
typedef struct {
    int64_t not_before;   // seconds since 1970-01-01T00:00:00Z
    int64_t not_after;    // seconds since 1970-01-01T00:00:00Z
    int is_ca;            // basicConstraints CA:TRUE
    char subject[256];    // one-line RFC 2253 subject, truncated
} vigil_cert_info;

/// Reads the first certificate of the PEM file at `path`.
/// Returns 0, or -1 with a reason in `error` (never patient data: file contents are not echoed).
int vigil_cert_read(const char *path, vigil_cert_info *info, char *error, size_t error_len);

/// Verifies the certificate in `cert_path` against the CA certificate(s) in `ca_path` at the
/// current time. Returns 0 when the chain verifies, else the X509_V_ERR_* code with its text
/// in `error` (-1 when a file cannot be read).
int vigil_cert_verify(const char *ca_path, const char *cert_path, char *error, size_t error_len);

/// Whether the private key in `key_path` belongs to the certificate in `cert_path`.
/// Returns 0 when it does, -1 with a reason otherwise.
int vigil_key_matches(const char *cert_path, const char *key_path, char *error, size_t error_len);

/// Runs a TLS client handshake on the connected socket `fd` (blocking, with the socket's own
/// SO_RCVTIMEO/SO_SNDTIMEO as the time limit). Verifies the server against `ca_path` (or the
/// system store when NULL) and its name against `host`; presents `cert_path`/`key_path`
/// when both are given. Returns 0 on success, else -1 with the reason in `error`.
int vigil_tls_handshake(int fd, const char *host, const char *ca_path, const char *cert_path,
                        const char *key_path, char *error, size_t error_len);

/// The kernel's clock discipline state (adjtimex(2)): `unsynchronised` is 1 when STA_UNSYNC is
/// set or the state is TIME_ERROR; `estimated_error_us` is the kernel's estimate in µs.
/// Returns 0, or -1 with errno set.
int vigil_clock_state(int *unsynchronised, long *estimated_error_us);

#endif
