#if canImport(Glibc)
import Glibc
#endif
import COpenSSL

/// Server-side TLS or DTLS configuration: one OpenSSL `SSL_CTX` holding the certificate chain and private
/// key (PEM files), protocol bounds and callbacks.
///
/// - TLS: 1.2 and 1.3 only (RFC 8489 section 6.2.3: STUN over TLS-over-TCP; RFC 8656 section 3.1: TURN
///   client-to-server transports TCP/TLS). DTLS: 1.2 only (RFC 6347), with the cookie exchange done
///   statelessly by `DTLSListener`.
/// - TLS 1.2 ciphers: ECDHE with AES-GCM or ChaCha20-Poly1305 only (forward secrecy, AEAD); TLS 1.3 uses
///   OpenSSL's default suites. No compression, no renegotiation (neither side may start one), server
///   cipher preference. Session resumption (the server session cache and session tickets) stays on.
/// - ALPN (RFC 7443): if the client offers "stun.turn" it is selected; otherwise if it offers
///   "stun.nat-discovery" that is selected. If the client offers ALPN with neither, the handshake still
///   completes *without* ALPN (the server sends no ALPN extension) instead of failing with the
///   `no_application_protocol` alert RFC 7301 allows: RFC 7443 does not require clients to offer ALPN, and
///   a client naming some other protocol is better served by a STUN/TURN answer than by a hard failure.
///   `TLSSession.negotiatedALPN` tells which case happened.
///
/// Certificate reload: build a new context and use it for new sessions. A session holds its own reference
/// to the `SSL_CTX` (`SSL_new` takes one, `SSL_free` releases it), and no callback of the context refers to
/// this Swift object, so releasing the old `TLSServerContext` while its sessions live on is safe: the
/// `SSL_CTX` is freed with its last session.
///
/// Immutable after `init`, hence `Sendable`: OpenSSL allows concurrent `SSL_new` on one `SSL_CTX`.
public final class TLSServerContext: @unchecked Sendable {
    let ctx: OpaquePointer
    /// DTLS (datagram) rather than TLS (stream).
    public let isDatagram: Bool
    /// DTLS only: the record-layer MTU the handshake fragments to (bytes of DTLS records per datagram).
    public let datagramMTU: Int
    /// DTLS only: the per-context random key of the stateless cookie HMAC (RFC 6347 section 4.2.1).
    let cookieSecret: [UInt8]

    /// Default DTLS MTU: fits every IPv6 path (1280) after IP/UDP headers, and also the common case of
    /// TURN-over-DTLS traffic carrying ChannelData of a media MTU.
    public static let defaultDatagramMTU = 1200

    /// TLS 1.2 suites (TLS 1.3 suites are OpenSSL's defaults: AES-GCM and ChaCha20-Poly1305).
    static let tls12Ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
        + "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
        + "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

    /// A TLS 1.2/1.3 server context (stream transports: TLS over TCP).
    /// Throws `.fileNotReadable`, `.invalidCertificate`, `.invalidPrivateKey` or `.keyMismatch` with the path
    /// and OpenSSL's reason.
    public convenience init(certificateChainPath: String, privateKeyPath: String) throws(TLSError) {
        try self.init(datagram: false, mtu: 0, certificateChainPath: certificateChainPath, privateKeyPath: privateKeyPath)
    }

    /// A DTLS 1.2 server context (RFC 6347; STUN/TURN over DTLS, RFC 8489 section 6.2.3 / RFC 8656 section 3.1)
    /// with cookie generate/verify callbacks for `DTLSListener`: the cookie is an HMAC-SHA256, keyed by a random
    /// secret made for this context, over the client's transport address and a 30-second time slot; a cookie
    /// from the current or the previous slot is accepted.
    public static func dtls(certificateChainPath: String, privateKeyPath: String,
                            mtu: Int = TLSServerContext.defaultDatagramMTU) throws(TLSError) -> TLSServerContext {
        try TLSServerContext(datagram: true, mtu: mtu, certificateChainPath: certificateChainPath, privateKeyPath: privateKeyPath)
    }

    private init(datagram: Bool, mtu: Int, certificateChainPath: String, privateKeyPath: String) throws(TLSError) {
        ERR_clear_error()
        for path in [certificateChainPath, privateKeyPath] where access(path, R_OK) != 0 {
            let reason = String(cString: strerror(errno))
            throw TLSError(.fileNotReadable, "cannot read \(path): \(reason)")
        }
        guard let ctx = SSL_CTX_new(datagram ? DTLS_server_method() : TLS_server_method()) else {
            throw TLSError.fromQueue(.configuration, "SSL_CTX_new failed")
        }
        // From here on, `ctx` must be freed on every error path.
        do throws(TLSError) {
            try Self.configure(ctx, datagram: datagram)
            try Self.loadCertificateAndKey(ctx, chain: certificateChainPath, key: privateKeyPath)
        } catch {
            SSL_CTX_free(ctx)
            throw error
        }
        var secret = [UInt8](repeating: 0, count: 32)
        if datagram {
            guard RAND_bytes(&secret, Int32(secret.count)) == 1 else {
                SSL_CTX_free(ctx)
                throw TLSError.fromQueue(.configuration, "RAND_bytes failed for the DTLS cookie secret")
            }
        }
        self.ctx = ctx
        self.isDatagram = datagram
        self.datagramMTU = datagram ? max(256, mtu) : 0
        self.cookieSecret = datagram ? secret : []
    }

    deinit {
        // Drops this object's reference; sessions made from it keep theirs.
        SSL_CTX_free(ctx)
    }

    private static func configure(_ ctx: OpaquePointer, datagram: Bool) throws(TLSError) {
        let minVersion = datagram ? DTLS1_2_VERSION : TLS1_2_VERSION
        let maxVersion = datagram ? DTLS1_2_VERSION : TLS1_3_VERSION
        guard tern_ssl_ctx_set_min_proto(ctx, minVersion) == 1, tern_ssl_ctx_set_max_proto(ctx, maxVersion) == 1 else {
            throw TLSError.fromQueue(.configuration, "cannot set protocol versions")
        }
        tern_ssl_ctx_harden_server(ctx)
        guard SSL_CTX_set_cipher_list(ctx, tls12Ciphers) == 1 else {
            throw TLSError.fromQueue(.configuration, "cannot set the cipher list")
        }
        // Never prompt on the terminal for a passphrase: an encrypted key simply fails to load.
        SSL_CTX_set_default_passwd_cb(ctx, noPassphrase)
        SSL_CTX_set_alpn_select_cb(ctx, selectALPN, nil)
        if datagram {
            SSL_CTX_set_cookie_generate_cb(ctx, generateCookie)
            SSL_CTX_set_cookie_verify_cb(ctx, verifyCookie)
            // An abbreviated (resumed) handshake after the cookie exchange stalled with coturn's
            // DTLS client: DTLS associations always do the full handshake.
            tern_ssl_ctx_disable_resumption(ctx)
        }
    }

    private static func loadCertificateAndKey(_ ctx: OpaquePointer, chain: String, key: String) throws(TLSError) {
        guard SSL_CTX_use_certificate_chain_file(ctx, chain) == 1 else {
            throw TLSError.fromQueue(.invalidCertificate, "no usable PEM certificate chain in \(chain)")
        }
        guard let bio = BIO_new_file(key, "r") else {
            throw TLSError.fromQueue(.fileNotReadable, "cannot open \(key)")
        }
        let pkey = PEM_read_bio_PrivateKey(bio, nil, noPassphrase, nil)
        BIO_free(bio)
        guard let pkey else {
            throw TLSError.fromQueue(.invalidPrivateKey, "no usable (unencrypted) PEM private key in \(key)")
        }
        let used = SSL_CTX_use_PrivateKey(ctx, pkey)
        EVP_PKEY_free(pkey)   // the context took its own reference if it succeeded
        guard used == 1, SSL_CTX_check_private_key(ctx) == 1 else {
            throw TLSError.fromQueue(.keyMismatch, "private key \(key) does not match the certificate in \(chain)")
        }
        ERR_clear_error()
    }
}

// MARK: - C callbacks (no captures; they never refer to a TLSServerContext object)

private let noPassphrase: @convention(c) (UnsafeMutablePointer<CChar>?, Int32, Int32, UnsafeMutableRawPointer?) -> Int32 = { _, _, _, _ in 0 }

/// ALPN protocols the server accepts (RFC 7443), in preference order.
let ternALPNPreference: [[UInt8]] = [Array("stun.turn".utf8), Array("stun.nat-discovery".utf8)]

/// RFC 7301 server selection over the client's wire-format list (length-prefixed names). `out` must point
/// into `input` (OpenSSL copies it). No overlap → NOACK: the handshake goes on without ALPN.
private let selectALPN: @convention(c) (
    OpaquePointer?, UnsafeMutablePointer<UnsafePointer<UInt8>?>?, UnsafeMutablePointer<UInt8>?,
    UnsafePointer<UInt8>?, UInt32, UnsafeMutableRawPointer?
) -> Int32 = { _, out, outLength, input, inputLength, _ in
    guard let out, let outLength, let input else { return SSL_TLSEXT_ERR_NOACK }
    let offered = UnsafeBufferPointer(start: input, count: Int(inputLength))
    for wanted in ternALPNPreference {
        var i = 0
        while i < offered.count {
            let length = Int(offered[i])
            let start = i + 1
            guard length > 0, start + length <= offered.count else { break }   // malformed list: stop
            if length == wanted.count, offered[start..<(start + length)].elementsEqual(wanted) {
                out.pointee = input + start
                outLength.pointee = UInt8(length)
                return SSL_TLSEXT_ERR_OK
            }
            i = start + length
        }
    }
    return SSL_TLSEXT_ERR_NOACK
}
