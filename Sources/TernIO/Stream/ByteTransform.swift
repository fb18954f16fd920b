import STUN

/// What lies between a stream connection's socket and its role: nothing (plain TCP), or a TLS
/// session (RFC 8489 section 6.2.3, RFC 8656 section 3.1: STUN/TURN over TLS-over-TCP).
enum ByteTransform {
    case plain
    case tls(TLSTransform)

    var tls: TLSTransform? {
        if case .tls(let t) = self { return t }
        return nil
    }
}

/// One connection's TLS session with its scratch buffers. Ciphertext goes in, plaintext comes out;
/// application bytes go in, ciphertext for the wire comes out.
final class TLSTransform {
    let session: TLSSession
    /// Counted in the worker's handshakes in flight until the handshake completes or the connection closes.
    var handshaking = false
    /// Ciphertext read from the socket (one read's worth). Starts small (a connection that never
    /// gets past its handshake holds little) and doubles, up to 16 KiB (one TLS record), each time a
    /// read fills it.
    private(set) var cipher: [UInt8]
    static let initialChunk = 2048
    static let maxChunk = 16 * 1024
    /// Plaintext decrypted from the last read.
    private(set) var plain: [UInt8] = []
    private var wire: [UInt8] = []

    init(session: TLSSession, readChunk: Int = TLSTransform.initialChunk) {
        self.session = session
        self.cipher = [UInt8](repeating: 0, count: readChunk)
    }

    var handshakeComplete: Bool { session.handshakeComplete }

    /// Reads ciphertext from `stream` into `cipher`.
    func read(from stream: StreamSocket) -> StreamSocket.ReadOutcome {
        let outcome = cipher.withUnsafeMutableBytes { stream.read(into: $0) }
        if case .bytes(let n) = outcome, n == cipher.count, cipher.count < Self.maxChunk {
            // `decrypt` reads the first n bytes before the next read: grow after it, keeping them.
            growPending = true
        }
        return outcome
    }

    /// Set when a read filled `cipher`: it doubles before the next read.
    private var growPending = false

    /// Grows `cipher` if the last read filled it (called once its bytes were decrypted).
    func growIfFilled() {
        guard growPending else { return }
        growPending = false
        cipher.append(contentsOf: repeatElement(0, count: min(cipher.count, Self.maxChunk - cipher.count)))
    }

    /// Decrypts the first `count` bytes of `cipher` into `plain` (handshake records are answered into
    /// the session's output, to be sent with `flush`).
    func decrypt(count: Int) throws -> TLSProgress {
        plain.removeAll(keepingCapacity: true)
        let session = self.session
        defer { growIfFilled() }
        return try cipher.withUnsafeBytes { buf in
            try session.receive(UnsafeRawBufferPointer(rebasing: buf[0..<count]), plaintext: &plain)
        }
    }

    /// Encrypts application bytes into the session's output.
    func encrypt(_ bytes: UnsafeRawBufferPointer) throws(TLSError) {
        try session.send(bytes)
    }

    /// Sends whatever ciphertext the session has produced (handshake, alerts, records).
    func flush(to stream: StreamSocket) {
        guard session.pendingOutput > 0 else { return }
        wire.removeAll(keepingCapacity: true)
        session.takeOutput(into: &wire)
        wire.withUnsafeBytes { stream.write($0) }
    }

    /// close_notify, best effort.
    func shutdown(to stream: StreamSocket) {
        session.shutdown()
        flush(to: stream)
    }
}
