#if canImport(Glibc)
import Glibc
#endif
import COpenSSL

/// What one `TLSSession.receive` call produced. Decrypted bytes may have been appended to `plaintext`
/// with any of these values (e.g. a TLS 1.3 client's first data arriving with its Finished message gives
/// `.handshakeDone` and data), so callers always look at `plaintext` too.
public enum TLSProgress: Equatable, Sendable {
    /// Nothing to deliver yet: more ciphertext is needed (a partial record, or a handshake in flight).
    case needMore
    /// The handshake completed during this call.
    case handshakeDone
    /// Application data was appended to `plaintext`.
    case data
    /// The peer sent close_notify: no more data will come. Call `shutdown()` to answer with ours.
    case closed
}

/// One connection's TLS (or DTLS) state machine over two OpenSSL memory BIOs; it never touches a socket.
/// The event loop feeds it the ciphertext it reads (`receive`) and sends what it produces (`takeOutput`,
/// or `takeDatagrams` for DTLS). Server side only.
///
/// STUN over TLS is framed exactly like STUN over TCP once decrypted (RFC 8489 section 6.2.3); TURN
/// clients reach the server over UDP, TCP, TLS-over-TCP or DTLS-over-UDP (RFC 8656 section 3.1).
///
/// After every `receive` (and `send`, `shutdown`, `handleTimeout`) check `pendingOutput`: the handshake,
/// TLS 1.3 session tickets and KeyUpdate answers, and alerts are all produced as a side effect of input.
///
/// After a thrown `TLSError` the session is dead (every later `receive` throws again), but OpenSSL may
/// have queued a fatal alert for the peer: send `takeOutput` once more before closing the socket.
///
/// Not thread-safe: confine a session to its worker's serial queue (moving it between queues is fine as
/// long as two threads never use it at once).
public final class TLSSession {
    private enum State { case handshaking, established, closed, failed }

    private let ssl: OpaquePointer
    /// Network → OpenSSL. Owned by `ssl`.
    private let rbio: OpaquePointer
    /// OpenSSL → network. Owned by `ssl`.
    private let wbio: OpaquePointer
    private var state: State = .handshaking
    private var lastError: TLSError?
    private var sentShutdown = false
    /// DTLS sessions accepted by a `DTLSListener`: the cookie key and client address the cookie callbacks
    /// read through the SSL's ex_data (unretained there, retained here; `ssl` dies first in deinit).
    private let cookieBinding: DTLSCookieBinding?

    /// DTLS (each `receive` is one datagram; output is split into datagrams by `takeDatagrams`).
    public let isDatagram: Bool
    /// DTLS: the largest datagram `takeDatagrams` produces (0 for TLS).
    public let datagramMTU: Int

    /// A server session for `context`. For DTLS prefer `DTLSListener`, which does the cookie exchange
    /// first; a session made here answers the first ClientHello statefully, without a cookie.
    public convenience init(context: TLSServerContext) throws(TLSError) {
        ERR_clear_error()
        guard let ssl = SSL_new(context.ctx) else {
            throw TLSError.fromQueue(.configuration, "SSL_new failed")
        }
        do throws(TLSError) {
            try attachMemoryBIOs(ssl, datagramMTU: context.isDatagram ? context.datagramMTU : nil)
        } catch {
            SSL_free(ssl)
            throw error
        }
        self.init(adopting: ssl, datagramMTU: context.isDatagram ? context.datagramMTU : nil, cookieBinding: nil)
    }

    /// Takes ownership of a server `SSL` that already has its memory BIOs (see `attachMemoryBIOs`).
    init(adopting ssl: OpaquePointer, datagramMTU: Int?, cookieBinding: DTLSCookieBinding?) {
        self.ssl = ssl
        self.rbio = SSL_get_rbio(ssl)
        self.wbio = SSL_get_wbio(ssl)
        self.isDatagram = datagramMTU != nil
        self.datagramMTU = datagramMTU ?? 0
        self.cookieBinding = cookieBinding
        if let cookieBinding {
            SSL_set_ex_data(ssl, DTLSCookieBinding.exIndex, Unmanaged.passUnretained(cookieBinding).toOpaque())
        }
    }

    deinit {
        SSL_free(ssl)   // frees both BIOs and drops the SSL_CTX reference
    }

    // MARK: Input

    /// Feeds bytes received from the network (TLS: any slice of the stream; DTLS: exactly one datagram).
    /// Decrypted application bytes are appended to `plaintext` (caller-owned, reuse it).
    /// Throws `.handshakeFailed` / `.protocolError` for anything the peer sent that OpenSSL rejects; after
    /// that, send `takeOutput` (it may hold a fatal alert) and close. DTLS silently discards bad records
    /// (RFC 6347 section 4.1.2.7), so garbage datagrams give `.needMore` instead of an error.
    public func receive(_ ciphertext: UnsafeRawBufferPointer, plaintext: inout [UInt8]) throws(TLSError) -> TLSProgress {
        switch state {
        case .failed: throw lastError ?? TLSError(.invalidState, "TLS session already failed")
        case .closed: return .closed
        case .handshaking, .established: break
        }
        if let base = ciphertext.baseAddress, ciphertext.count > 0 {
            var offset = 0
            while offset < ciphertext.count {
                let chunk = min(ciphertext.count - offset, Int(Int32.max))
                let written = BIO_write(rbio, base + offset, Int32(chunk))
                guard written > 0 else { throw fail(.fromQueue(.configuration, "memory BIO write failed")) }
                offset += Int(written)
            }
        }
        var progress = TLSProgress.needMore
        if state == .handshaking {
            ERR_clear_error()
            let r = SSL_do_handshake(ssl)
            if r == 1 {
                state = .established
                progress = .handshakeDone
            } else {
                switch SSL_get_error(ssl, r) {
                case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
                    return .needMore
                default:
                    throw fail(.fromQueue(.handshakeFailed, "TLS handshake failed"))
                }
            }
        }
        return try readApplicationData(into: &plaintext, progress: progress)
    }

    /// Convenience for `[UInt8]` input.
    public func receive(_ ciphertext: [UInt8], plaintext: inout [UInt8]) throws(TLSError) -> TLSProgress {
        var result: Result<TLSProgress, TLSError> = .success(.needMore)
        ciphertext.withUnsafeBytes { bytes in
            do throws(TLSError) { result = .success(try receive(bytes, plaintext: &plaintext)) } catch { result = .failure(error) }
        }
        return try result.get()
    }

    private func readApplicationData(into plaintext: inout [UInt8], progress start: TLSProgress) throws(TLSError) -> TLSProgress {
        var progress = start
        var failure: TLSError?
        withUnsafeTemporaryAllocation(byteCount: 16_384, alignment: 1) { buffer in
            while true {
                ERR_clear_error()
                var n = 0
                if SSL_read_ex(ssl, buffer.baseAddress, buffer.count, &n) == 1 {
                    plaintext.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                    if progress == .needMore { progress = .data }
                    continue
                }
                switch SSL_get_error(ssl, 0) {
                case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
                    return
                case SSL_ERROR_ZERO_RETURN:
                    state = .closed
                    progress = .closed
                    return
                default:
                    failure = .fromQueue(.protocolError, "TLS record layer error")
                    return
                }
            }
        }
        if let failure { throw fail(failure) }
        return progress
    }

    private func fail(_ error: TLSError) -> TLSError {
        state = .failed
        lastError = error
        return error
    }

    // MARK: Output

    /// Encrypts application bytes (all of them; memory BIOs never block). The records wait in `takeOutput`.
    /// DTLS: one call makes one record, so keep each call within one datagram (about `datagramMTU` - 64).
    public func send(_ plaintext: UnsafeRawBufferPointer) throws(TLSError) {
        guard state == .established else {
            throw TLSError(.invalidState, state == .handshaking ? "TLS send before the handshake completed" : "TLS send on a closed session")
        }
        guard let base = plaintext.baseAddress, plaintext.count > 0 else { return }
        var offset = 0
        while offset < plaintext.count {
            ERR_clear_error()
            var written = 0
            guard SSL_write_ex(ssl, base + offset, plaintext.count - offset, &written) == 1, written > 0 else {
                throw fail(.fromQueue(.protocolError, "TLS write failed"))
            }
            offset += written
        }
    }

    /// Convenience for `[UInt8]` input.
    public func send(_ plaintext: [UInt8]) throws(TLSError) {
        var failure: TLSError?
        plaintext.withUnsafeBytes { bytes in
            do throws(TLSError) { try send(bytes) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Bytes of ciphertext waiting for the network.
    public var pendingOutput: Int { Int(BIO_ctrl_pending(wbio)) }

    /// Appends the waiting ciphertext (handshake records, alerts, encrypted data) to `out` and empties the
    /// BIO. For DTLS use `takeDatagrams`: this concatenates records without datagram boundaries.
    public func takeOutput(into out: inout [UInt8]) {
        let pending = pendingOutput
        guard pending > 0 else { return }
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: pending))
        let read = out.withUnsafeMutableBytes { BIO_read(wbio, $0.baseAddress! + start, Int32(clamping: pending)) }
        let got = max(0, Int(read))
        if got < pending { out.removeLast(pending - got) }
    }

    /// DTLS: the waiting output as datagrams of at most `datagramMTU` bytes, each holding whole DTLS
    /// records (several records may share a datagram, RFC 6347 section 4.1.1). Appends to `out`.
    public func takeDatagrams(into out: inout [[UInt8]]) {
        var bytes: [UInt8] = []
        takeOutput(into: &bytes)
        guard !bytes.isEmpty else { return }
        let limit = max(datagramMTU, 1)
        var current: [UInt8] = []
        var i = 0
        while i < bytes.count {
            // DTLS record header: type(1) version(2) epoch(2) sequence(6) length(2).
            var end = bytes.count
            if bytes.count - i >= 13 {
                let length = Int(bytes[i + 11]) << 8 | Int(bytes[i + 12])
                end = min(bytes.count, i + 13 + length)
            }
            if !current.isEmpty && current.count + (end - i) > limit {
                out.append(current)
                current = []
            }
            current.append(contentsOf: bytes[i..<end])
            i = end
        }
        if !current.isEmpty { out.append(current) }
    }

    /// Queues close_notify (sent by the next `takeOutput`). Idempotent; nothing is sent before the
    /// handshake completed or after a failure.
    public func shutdown() {
        guard !sentShutdown, state == .established || state == .closed else { return }
        sentShutdown = true
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    // MARK: DTLS retransmission

    /// DTLS: how long until a handshake flight should be retransmitted (`handleTimeout()`), or nil when no
    /// retransmission timer runs. Always nil for TLS.
    public var retransmitTimeout: Duration? {
        guard isDatagram else { return nil }
        var tv = timeval()
        guard tern_dtls_get_timeout(ssl, &tv) == 1 else { return nil }
        return .seconds(Int64(tv.tv_sec)) + .microseconds(Int64(tv.tv_usec))
    }

    /// DTLS: retransmits the last handshake flight if its timer expired (the datagrams wait in
    /// `takeDatagrams`). Throws once OpenSSL gives up after too many retransmissions.
    public func handleTimeout() throws(TLSError) {
        guard isDatagram, state == .handshaking || state == .established else { return }
        ERR_clear_error()
        if tern_dtls_handle_timeout(ssl) < 0 {
            throw fail(.fromQueue(.handshakeFailed, "DTLS handshake timed out"))
        }
    }

    // MARK: State

    /// True once the handshake completed (and stays true after close).
    public var handshakeComplete: Bool { state == .established || state == .closed || (state == .failed && SSL_is_init_finished(ssl) == 1) }

    /// The ALPN protocol selected (RFC 7443: "stun.turn" or "stun.nat-discovery"), nil if none.
    public var negotiatedALPN: String? {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    /// "TLSv1.3", "TLSv1.2", "DTLSv1.2" once the handshake completed; nil before.
    public var protocolVersion: String? {
        guard handshakeComplete, let name = SSL_get_version(ssl) else { return nil }
        return String(cString: name)
    }

    /// The negotiated cipher suite name once the handshake completed.
    public var cipherName: String? {
        guard handshakeComplete, let cipher = SSL_get_current_cipher(ssl), let name = SSL_CIPHER_get_name(cipher) else { return nil }
        return String(cString: name)
    }
}

/// Gives `ssl` a pair of memory BIOs (read: empty → "retry", never EOF) and puts it in server mode; for
/// DTLS also a fixed MTU (memory BIOs cannot report one).
func attachMemoryBIOs(_ ssl: OpaquePointer, datagramMTU: Int?) throws(TLSError) {
    guard let rbio = BIO_new(BIO_s_mem()) else {
        throw TLSError.fromQueue(.configuration, "BIO_new failed")
    }
    guard let wbio = BIO_new(BIO_s_mem()) else {
        BIO_free(rbio)
        throw TLSError.fromQueue(.configuration, "BIO_new failed")
    }
    _ = tern_bio_set_mem_eof_return(rbio, -1)
    _ = tern_bio_set_mem_eof_return(wbio, -1)
    SSL_set_bio(ssl, rbio, wbio)   // ssl owns both from here
    SSL_set_accept_state(ssl)
    if let datagramMTU {
        tern_ssl_set_fixed_mtu(ssl, datagramMTU)
    }
}
