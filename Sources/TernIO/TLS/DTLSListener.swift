#if canImport(Glibc)
import Glibc
#endif
import COpenSSL

/// What `DTLSListener.handle` decided for one datagram from a client that has no DTLS session yet.
public enum DTLSListenResult {
    /// Send these bytes back to the client (a HelloVerifyRequest carrying a cookie). No state was kept.
    case reply([UInt8])
    /// The ClientHello carried a valid cookie: here is the client's new session, which has already
    /// processed that ClientHello; send its `takeDatagrams` output (the server's first flight).
    case accept(TLSSession)
    /// Not a ClientHello, or the handshake failed at once: ignore the datagram.
    case drop
}

/// The stateless DTLS cookie exchange (RFC 6347 section 4.2.1): a first ClientHello is answered with a
/// HelloVerifyRequest whose cookie is an HMAC of the client's address, and no per-client state is created
/// until a ClientHello comes back with a valid cookie. This keeps a spoofed-source flood from allocating
/// sessions and from being amplified (RFC 8489 section 6.2.3 requires the cookie exchange for DTLS).
///
/// Built on OpenSSL's `DTLSv1_listen` over memory BIOs with one listening `SSL` per listener (one per
/// worker): every datagram is fed to it; it writes the HelloVerifyRequest and returns 0, or returns > 0
/// when the cookie verifies — then that `SSL` (holding the buffered ClientHello) becomes the client's
/// session and the listener makes a fresh listening `SSL`.
///
/// Not thread-safe: one per worker queue.
public final class DTLSListener {
    private let context: TLSServerContext
    private var ssl: OpaquePointer?
    /// The key and the client address of the datagram being handled, read by the cookie callbacks.
    private let binding: DTLSCookieBinding
    private let peer: OpaquePointer

    /// `context` must be a DTLS context (`TLSServerContext.dtls`).
    public init(context: TLSServerContext) throws(TLSError) {
        guard context.isDatagram else {
            throw TLSError(.configuration, "DTLSListener needs a DTLS context (TLSServerContext.dtls)")
        }
        guard let peer = BIO_ADDR_new() else {
            throw TLSError.fromQueue(.configuration, "BIO_ADDR_new failed")
        }
        self.context = context
        self.peer = peer
        self.binding = DTLSCookieBinding(secret: context.cookieSecret, peer: [])
        self.ssl = try makeListeningSSL()
    }

    deinit {
        if let ssl { SSL_free(ssl) }
        BIO_ADDR_free(peer)
    }

    private func makeListeningSSL() throws(TLSError) -> OpaquePointer {
        ERR_clear_error()
        guard let ssl = SSL_new(context.ctx) else {
            throw TLSError.fromQueue(.configuration, "SSL_new failed")
        }
        do throws(TLSError) {
            try attachMemoryBIOs(ssl, datagramMTU: context.datagramMTU)
        } catch {
            SSL_free(ssl)
            throw error
        }
        SSL_set_ex_data(ssl, DTLSCookieBinding.exIndex, Unmanaged.passUnretained(binding).toOpaque())
        return ssl
    }

    /// Handles one datagram from a client without a session. `clientAddress` is any stable byte encoding
    /// of the client's transport address (IP and port); the cookie is bound to it.
    public func handle(datagram: UnsafeRawBufferPointer, from clientAddress: [UInt8]) -> DTLSListenResult {
        // Cheap filter before OpenSSL: a DTLS handshake record (type 22, version major 0xFE) holding a
        // ClientHello (handshake type 1).
        guard datagram.count >= 25, datagram.count <= 65_535,
              datagram[0] == 22, datagram[1] == 0xFE, datagram[13] == 1 else { return .drop }
        if ssl == nil { ssl = try? makeListeningSSL() }
        guard let ssl, let base = datagram.baseAddress else { return .drop }
        guard let rbio = SSL_get_rbio(ssl), let wbio = SSL_get_wbio(ssl) else { return .drop }
        _ = BIO_ctrl(rbio, BIO_CTRL_RESET, 0, nil)
        _ = BIO_ctrl(wbio, BIO_CTRL_RESET, 0, nil)
        binding.peer = clientAddress
        ERR_clear_error()
        guard BIO_write(rbio, base, Int32(datagram.count)) == Int32(datagram.count) else {
            ERR_clear_error()
            return .drop
        }
        let r = DTLSv1_listen(ssl, peer)
        if r > 0 {
            // The cookie verified: this SSL is now the client's. Replace the listener's.
            self.ssl = try? makeListeningSSL()
            let sessionBinding = DTLSCookieBinding(secret: context.cookieSecret, peer: clientAddress)
            let session = TLSSession(adopting: ssl, datagramMTU: context.datagramMTU, cookieBinding: sessionBinding)
            var plaintext: [UInt8] = []
            do throws(TLSError) {
                _ = try session.receive(UnsafeRawBufferPointer(start: nil, count: 0), plaintext: &plaintext)
            } catch {
                return .drop
            }
            return .accept(session)
        }
        ERR_clear_error()
        if r < 0 {
            // Should not happen on memory BIOs; start over with a clean listening SSL.
            SSL_free(ssl)
            self.ssl = try? makeListeningSSL()
            return .drop
        }
        let pending = Int(BIO_ctrl_pending(wbio))
        guard pending > 0 else { return .drop }
        var reply = [UInt8](repeating: 0, count: pending)
        let n = reply.withUnsafeMutableBytes { BIO_read(wbio, $0.baseAddress, Int32(pending)) }
        guard n > 0 else { return .drop }
        if Int(n) < pending { reply.removeLast(pending - Int(n)) }
        return .reply(reply)
    }

    /// Convenience for `[UInt8]` input.
    public func handle(datagram: [UInt8], from clientAddress: [UInt8]) -> DTLSListenResult {
        datagram.withUnsafeBytes { handle(datagram: $0, from: clientAddress) }
    }
}

/// The cookie key and the client address for one `SSL`, reachable from the C cookie callbacks through
/// the SSL's ex_data (an unretained pointer; the owner of the SSL retains this object).
final class DTLSCookieBinding {
    let secret: [UInt8]
    var peer: [UInt8]

    init(secret: [UInt8], peer: [UInt8]) {
        self.secret = secret
        self.peer = peer
    }

    /// The SSL ex_data slot, allocated once per process.
    static let exIndex: Int32 = tern_ssl_get_ex_new_index()

    /// Cookie validity slot: a cookie from the current or the previous 30-second slot verifies.
    static let slotSeconds: UInt64 = 30

    static func binding(of ssl: OpaquePointer?) -> DTLSCookieBinding? {
        guard let ssl, let raw = SSL_get_ex_data(ssl, exIndex) else { return nil }
        return Unmanaged<DTLSCookieBinding>.fromOpaque(raw).takeUnretainedValue()
    }

    static func currentSlot() -> UInt64 {
        Clocks.monotonicSeconds() / slotSeconds
    }

    /// HMAC-SHA256(secret, slot ‖ peer): 32 bytes.
    func cookie(slot: UInt64) -> [UInt8]? {
        var message = withUnsafeBytes(of: slot.bigEndian) { Array($0) }
        message.append(contentsOf: peer)
        var mac = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let ok = secret.withUnsafeBytes { key in
            COpenSSL.HMAC(EVP_sha256(), key.baseAddress, Int32(key.count), message, message.count, &mac, &length)
        }
        guard ok != nil, length > 0 else { return nil }
        return Array(mac[0..<Int(length)])
    }
}

/// `SSL_CTX_set_cookie_generate_cb`: writes the cookie for the current slot (at most 255 bytes).
let generateCookie: @convention(c) (OpaquePointer?, UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt32>?) -> Int32 = { ssl, out, outLength in
    guard let out, let outLength, let binding = DTLSCookieBinding.binding(of: ssl),
          let cookie = binding.cookie(slot: DTLSCookieBinding.currentSlot()), cookie.count <= 255 else { return 0 }
    cookie.withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: $0.count) }
    outLength.pointee = UInt32(cookie.count)
    return 1
}

/// `SSL_CTX_set_cookie_verify_cb`: 1 if the cookie is this address's for the current or previous slot.
let verifyCookie: @convention(c) (OpaquePointer?, UnsafePointer<UInt8>?, UInt32) -> Int32 = { ssl, cookie, length in
    guard let cookie, length > 0, let binding = DTLSCookieBinding.binding(of: ssl) else { return 0 }
    let slot = DTLSCookieBinding.currentSlot()
    for candidate in [slot, slot &- 1] {
        guard let expected = binding.cookie(slot: candidate), expected.count == Int(length) else { continue }
        if CRYPTO_memcmp(expected, cookie, expected.count) == 0 { return 1 }
    }
    return 0
}
