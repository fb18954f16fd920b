import COpenSSL
import STUN

/// A TLS client over two memory BIOs, for `tern probe` and `turns:` URLs (RFC 8656 section 3.1:
/// TURN over TLS-over-TCP; RFC 7443: ALPN "stun.turn"). The caller moves the bytes: `takeOutput`
/// to the socket, what the socket gives to `feed`.
public final class TLSClientSession {
    private let ctx: OpaquePointer
    private let ssl: OpaquePointer
    private let rbio: OpaquePointer
    private let wbio: OpaquePointer

    /// `serverName`: SNI, and the name the certificate must carry when verifying. `caFile`: trust
    /// these PEM certificates instead of the system's. `verify` false accepts any certificate.
    public init(serverName: String?, caFile: String?, verify: Bool) throws(TLSError) {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw TLSError.fromQueue(.configuration, "SSL_CTX_new failed") }
        self.ctx = ctx
        _ = tern_ssl_ctx_set_min_proto(ctx, TLS1_2_VERSION)
        if verify {
            let loaded = caFile.map { SSL_CTX_load_verify_locations(ctx, $0, nil) } ?? SSL_CTX_set_default_verify_paths(ctx)
            guard loaded == 1 else {
                SSL_CTX_free(ctx)
                throw TLSError.fromQueue(.configuration, "cannot load the trusted certificates\(caFile.map { " from \($0)" } ?? "")")
            }
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        }
        let alpn: [UInt8] = [9] + Array("stun.turn".utf8)
        _ = SSL_CTX_set_alpn_protos(ctx, alpn, UInt32(alpn.count))
        guard let ssl = SSL_new(ctx), let rbio = BIO_new(BIO_s_mem()), let wbio = BIO_new(BIO_s_mem()) else {
            SSL_CTX_free(ctx)
            throw TLSError.fromQueue(.configuration, "SSL_new failed")
        }
        self.ssl = ssl
        self.rbio = rbio
        self.wbio = wbio
        _ = tern_bio_set_mem_eof_return(rbio, -1)
        _ = tern_bio_set_mem_eof_return(wbio, -1)
        SSL_set_bio(ssl, rbio, wbio)
        SSL_set_connect_state(ssl)
        if let serverName, IPAddressText.isLiteral(serverName) == false {
            _ = tern_ssl_set_sni(ssl, serverName)
            if verify { _ = SSL_set1_host(ssl, serverName) }
        } else if let serverName, verify {
            _ = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), serverName)
        }
    }

    deinit {
        SSL_free(ssl)
        SSL_CTX_free(ctx)
    }

    /// Advances the handshake: true when done; false while it needs more input; throws when it failed.
    public func handshake() throws(TLSError) -> Bool {
        ERR_clear_error()
        let r = SSL_do_handshake(ssl)
        if r == 1 { return true }
        let e = SSL_get_error(ssl, r)
        if e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE { return false }
        let verify = SSL_get_verify_result(ssl)
        if verify != X509_V_OK {
            throw TLSError(.handshakeFailed, "certificate not trusted: \(String(cString: X509_verify_cert_error_string(verify)))")
        }
        throw TLSError.fromQueue(.handshakeFailed, "TLS handshake failed")
    }

    /// The ALPN protocol the server chose, if any.
    public var alpn: String? {
        var data: UnsafePointer<UInt8>? = nil
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    /// The protocol version in use ("TLSv1.3").
    public var version: String { String(cString: SSL_get_version(ssl)) }

    public func feed(_ ciphertext: [UInt8]) {
        guard !ciphertext.isEmpty else { return }
        _ = BIO_write(rbio, ciphertext, Int32(ciphertext.count))
    }

    /// Ciphertext for the socket.
    public func takeOutput() -> [UInt8] {
        Self.drain { BIO_read(wbio, $0, $1) }
    }

    public func write(_ plaintext: [UInt8]) {
        guard !plaintext.isEmpty else { return }
        _ = SSL_write(ssl, plaintext, Int32(plaintext.count))
    }

    /// Whatever plaintext the fed ciphertext decrypts to.
    public func read() -> [UInt8] {
        Self.drain { SSL_read(ssl, $0, $1) }
    }

    /// Calls `next` with a 16 KiB buffer until it returns nothing more; everything it produced.
    private static func drain(_ next: (UnsafeMutableRawPointer, Int32) -> Int32) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16_384)
        while true {
            let n = chunk.withUnsafeMutableBytes { next($0.baseAddress!, Int32($0.count)) }
            if n <= 0 { break }
            out += chunk[0..<Int(n)]
        }
        return out
    }
}

/// Whether a host string is an IP literal (no SNI for those, RFC 6066 section 3).
enum IPAddressText {
    static func isLiteral(_ host: String) -> Bool {
        var h = host
        if h.hasPrefix("["), h.hasSuffix("]") { h = String(h.dropFirst().dropLast()) }
        return IPAddress(h) != nil
    }
}
