#ifndef TERN_COPENSSL_SHIM_H
#define TERN_COPENSSL_SHIM_H
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/md5.h>
#include <openssl/sha.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/bio.h>
#include <stdint.h>

/*
 * TLS/DTLS (Sources/TernIO/TLS): OpenSSL function-like macros and 64-bit option constants that Swift
 * cannot import. Every helper is a one-line forward to the function the macro expands to.
 */

/* SSL_CTX_set_min_proto_version / SSL_CTX_set_max_proto_version (macros over SSL_CTX_ctrl). */
static inline int tern_ssl_ctx_set_min_proto(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}
static inline int tern_ssl_ctx_set_max_proto(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_max_proto_version(ctx, version);
}

/* Server hardening: no compression, no renegotiation (either side), server cipher preference. */
static inline void tern_ssl_ctx_harden_server(SSL_CTX *ctx) {
#ifdef SSL_OP_NO_CLIENT_RENEGOTIATION
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION
                             | SSL_OP_NO_CLIENT_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
#else
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
#endif
}

/* Memory BIOs: what BIO_read returns when empty (-1 = "retry", the default for BIO_s_mem). */
static inline long tern_bio_set_mem_eof_return(BIO *bio, int value) {
    return BIO_set_mem_eof_return(bio, value);
}

/* DTLS over memory BIOs: never ask the BIO for the path MTU (it has none); use the one given. */
static inline void tern_ssl_set_fixed_mtu(SSL *ssl, long mtu) {
    SSL_set_options(ssl, SSL_OP_NO_QUERY_MTU);
    SSL_set_mtu(ssl, mtu);
}

/* DTLSv1_get_timeout: 1 and *tv set if a retransmission timer is running, else 0. */
static inline long tern_dtls_get_timeout(SSL *ssl, struct timeval *tv) {
    return DTLSv1_get_timeout(ssl, tv);
}
/* DTLSv1_handle_timeout: retransmits the last flight if its timer expired (1), 0 if nothing to do, <0 error. */
static inline long tern_dtls_handle_timeout(SSL *ssl) {
    return DTLSv1_handle_timeout(ssl);
}

/* SSL_get_ex_new_index with no callbacks. */
static inline int tern_ssl_get_ex_new_index(void) {
    return SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* DTLS: no session resumption (tickets or cache). The cookie listener hands over full handshakes only. */
static inline void tern_ssl_ctx_disable_resumption(SSL_CTX *ctx) {
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
}

/* SNI for a client (SSL_set_tlsext_host_name is a macro over SSL_ctrl). */
static inline long tern_ssl_set_sni(SSL *ssl, const char *name) {
    return SSL_set_tlsext_host_name(ssl, name);
}

#endif
