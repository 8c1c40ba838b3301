#include "CVigilDiagnose.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <time.h>

static void set_error(char *error, size_t len, const char *what) {
    if (!error || len == 0) return;
    unsigned long e = ERR_peek_last_error();
    if (e != 0) {
        char detail[200];
        ERR_error_string_n(e, detail, sizeof detail);
        snprintf(error, len, "%s (%s)", what, detail);
    } else {
        snprintf(error, len, "%s", what);
    }
    ERR_clear_error();
}

static X509 *read_cert(const char *path, char *error, size_t len) {
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(error, len, "cannot open: %s", strerror(errno));
        return NULL;
    }
    X509 *cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!cert) set_error(error, len, "not a PEM certificate");
    return cert;
}

static int64_t asn1_seconds(const ASN1_TIME *t) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
    return (int64_t)timegm(&tm);
}

int vigil_cert_read(const char *path, vigil_cert_info *info, char *error, size_t error_len) {
    ERR_clear_error();
    X509 *cert = read_cert(path, error, error_len);
    if (!cert) return -1;
    memset(info, 0, sizeof *info);
    info->not_before = asn1_seconds(X509_get0_notBefore(cert));
    info->not_after = asn1_seconds(X509_get0_notAfter(cert));
    info->is_ca = X509_check_ca(cert) > 0;
    X509_NAME_oneline(X509_get_subject_name(cert), info->subject, sizeof info->subject);
    X509_free(cert);
    return 0;
}

int vigil_cert_verify(const char *ca_path, const char *cert_path, char *error, size_t error_len) {
    ERR_clear_error();
    X509 *cert = read_cert(cert_path, error, error_len);
    if (!cert) return -1;
    int result = -1;
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (!store || !ctx) {
        set_error(error, error_len, "out of memory");
    } else if (X509_STORE_load_file(store, ca_path) != 1) {
        set_error(error, error_len, "cannot load the CA file");
    } else if (X509_STORE_CTX_init(ctx, store, cert, NULL) != 1) {
        set_error(error, error_len, "cannot set up verification");
    } else if (X509_verify_cert(ctx) == 1) {
        result = 0;
    } else {
        result = X509_STORE_CTX_get_error(ctx);
        if (result == 0) result = -1;
        snprintf(error, error_len, "%s", X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    }
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(cert);
    return result;
}

int vigil_key_matches(const char *cert_path, const char *key_path, char *error, size_t error_len) {
    ERR_clear_error();
    X509 *cert = read_cert(cert_path, error, error_len);
    if (!cert) return -1;
    FILE *f = fopen(key_path, "re");
    if (!f) {
        snprintf(error, error_len, "cannot open the key: %s", strerror(errno));
        X509_free(cert);
        return -1;
    }
    EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    int result = -1;
    if (!key) {
        set_error(error, error_len, "the key file holds no unencrypted PEM private key");
    } else if (X509_check_private_key(cert, key) != 1) {
        set_error(error, error_len, "the private key does not belong to the certificate");
    } else {
        result = 0;
    }
    EVP_PKEY_free(key);
    X509_free(cert);
    return result;
}

int vigil_tls_handshake(int fd, const char *host, const char *ca_path, const char *cert_path,
                        const char *key_path, char *error, size_t error_len) {
    ERR_clear_error();
    int result = -1;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    if (!ctx) {
        set_error(error, error_len, "cannot create a TLS context");
        goto done;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (ca_path ? SSL_CTX_load_verify_locations(ctx, ca_path, NULL) != 1 : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        set_error(error, error_len, "cannot load the CA certificates");
        goto done;
    }
    if (cert_path && key_path) {
        if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
            set_error(error, error_len, "cannot load the client certificate");
            goto done;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
            set_error(error, error_len, "cannot load the client key");
            goto done;
        }
    }
    ssl = SSL_new(ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
        set_error(error, error_len, "cannot create a TLS session");
        goto done;
    }
    if (host && host[0]) {
        SSL_set_tlsext_host_name(ssl, host);
        // An IP address is checked against the certificate's IP SANs, a name against its DNS SANs.
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        if (X509_VERIFY_PARAM_set1_ip_asc(param, host) != 1) {
            ERR_clear_error();
            X509_VERIFY_PARAM_set1_host(param, host, 0);
        }
    }
    int rc;
    do {
        rc = SSL_connect(ssl);
    } while (rc <= 0 && SSL_get_error(ssl, rc) == SSL_ERROR_SYSCALL && errno == EINTR);
    if (rc == 1) {
        result = 0;
        // TLS 1.3 completes the client's side of the handshake before the server has checked
        // the client certificate: a refusal arrives as an alert just after. Wait up to 1 s for
        // it (session tickets may arrive first and are consumed by the peek).
        struct timeval one = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &one, sizeof one);
        struct pollfd p = {fd, POLLIN, 0};
        int ready;
        do { ready = poll(&p, 1, 1000); } while (ready < 0 && errno == EINTR);
        if (ready > 0) {
            char byte;
            ERR_clear_error();
            int n = SSL_peek(ssl, &byte, 1);
            if (n <= 0) {
                int e = SSL_get_error(ssl, n);
                if (e == SSL_ERROR_SSL) {
                    set_error(error, error_len, "the broker refused this client after the handshake");
                    result = -1;
                } else if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno != EAGAIN && errno != EWOULDBLOCK)) {
                    snprintf(error, error_len, "the broker closed the connection after the handshake (does it accept this client's certificate?)");
                    result = -1;
                }
            }
        }
        if (result == 0) SSL_shutdown(ssl);
    } else {
        long verify = SSL_get_verify_result(ssl);
        if (verify != X509_V_OK) {
            snprintf(error, error_len, "the broker's certificate was refused: %s", X509_verify_cert_error_string(verify));
            ERR_clear_error();
        } else if (SSL_get_error(ssl, rc) == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
            snprintf(error, error_len, "the connection closed during the handshake%s%s",
                     errno ? ": " : "", errno ? strerror(errno) : "");
        } else {
            set_error(error, error_len, "the TLS handshake failed");
        }
    }
done:
    if (ssl) SSL_free(ssl);
    if (ctx) SSL_CTX_free(ctx);
    return result;
}

int vigil_clock_state(int *unsynchronised, long *estimated_error_us) {
    struct timex tx;
    memset(&tx, 0, sizeof tx);  // modes = 0: read only
    int state = adjtimex(&tx);
    if (state < 0) return -1;
    *unsynchronised = (tx.status & STA_UNSYNC) != 0 || state == TIME_ERROR;
    *estimated_error_us = tx.esterror;
    return 0;
}
