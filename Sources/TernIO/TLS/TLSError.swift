import COpenSSL

/// A TLS/DTLS failure: configuration (files, PEM, key/certificate mismatch) or protocol (a handshake or
/// record the peer sent that OpenSSL rejected). `description` includes OpenSSL's error queue text
/// (`ERR_error_string_n`), which names the exact reason ("wrong version number", "unsupported protocol",
/// "key values mismatch", ...).
public struct TLSError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// A certificate or key file is missing or unreadable.
        case fileNotReadable
        /// The certificate chain file holds no usable PEM certificate.
        case invalidCertificate
        /// The key file holds no usable (unencrypted) PEM private key.
        case invalidPrivateKey
        /// The private key does not belong to the (first) certificate of the chain.
        case keyMismatch
        /// Anything else while building a context or session (allocation, cipher list, ...).
        case configuration
        /// The peer's handshake was refused (bad version, no shared cipher, garbage, ...).
        case handshakeFailed
        /// After the handshake: a bad record, a fatal alert from the peer, ...
        case protocolError
        /// The caller used the session in a state that does not allow it (e.g. `send` before the handshake).
        case invalidState
    }

    public let kind: Kind
    public let message: String
    /// OpenSSL's error queue at the time of the failure, oldest first.
    public let openSSLErrors: [String]

    public init(_ kind: Kind, _ message: String, openSSLErrors: [String] = []) {
        self.kind = kind
        self.message = message
        self.openSSLErrors = openSSLErrors
    }

    /// Builds an error and drains (clears) this thread's OpenSSL error queue into it.
    static func fromQueue(_ kind: Kind, _ message: String) -> TLSError {
        TLSError(kind, message, openSSLErrors: drainOpenSSLErrors())
    }

    public var description: String {
        openSSLErrors.isEmpty ? message : message + ": " + openSSLErrors.joined(separator: "; ")
    }
}

/// Empties this thread's OpenSSL error queue, returning its entries as text. OpenSSL's queue is
/// per thread and Dispatch may run a worker queue on any thread, so every TLS operation clears the
/// queue before it starts and drains it when it fails: a stale entry never leaks into another session.
func drainOpenSSLErrors() -> [String] {
    var out: [String] = []
    var buffer = [CChar](repeating: 0, count: 256)
    while true {
        let code = ERR_get_error()
        if code == 0 { break }
        if out.count >= 16 { continue }   // keep draining, stop collecting
        buffer.withUnsafeMutableBufferPointer { ERR_error_string_n(code, $0.baseAddress, $0.count) }
        out.append(buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
    }
    return out
}
