import STUN
import TernCore

/// The `.pipe` role (RFC 6062): raw bytes between a peer connection and the client data connection
/// that ConnectionBind joined to it.
extension StreamConnection {
    /// Hands buffered bytes to the other end of the pipe. Without one yet (a peer connection before
    /// ConnectionBind), bytes wait in `input`, which stops reading when full: TCP's own window then
    /// holds the peer back (RFC 6062 section 5.3: the server buffers). Returns false when reading
    /// must stop for now.
    func forwardPipe() -> Bool {
        guard let peer = role.peer else {
            if input.isFull { stream.pauseReading(); return false }
            return true
        }
        if input.count > 0 {
            input.withBytes(0..<input.count) { peer.send($0) }
            input.count = 0
        }
        if peer.stream.queuedBytes > worker.limits.streamQueueBytes / 2 {
            stream.pauseReading()
            peer.stream.onDrained = { [weak self] in self?.stream.resumeReading() }
            return false
        }
        return true
    }

    /// Whether ConnectionBind has joined this connection to its other end.
    var isJoined: Bool { role.peer != nil }

    /// Bytes that arrived after the ConnectionBind request in the same read: raw data for the peer.
    func preload(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { input.append($0) }
    }

    /// Switches to the pipe role (a peer connection from the start, or a client connection after its
    /// ConnectionBind response).
    func becomePipe() {
        if !role.isPipe { role = .pipe(nil) }
    }

    /// Joins two pipe ends; bytes either one buffered so far are delivered.
    func join(_ other: StreamConnection) {
        role = .pipe(other)
        other.role = .pipe(self)
        if input.count > 0 { _ = forwardPipe() }
        if other.input.count > 0 { _ = other.forwardPipe() }
        other.stream.resumeReading()
        stream.resumeReading()
    }

    /// Waits for the non-blocking connect to a peer (RFC 6062 section 5.2); `completion(success)`
    /// runs on the worker queue.
    func startConnecting(completion: @escaping (Bool) -> Void) {
        becomePipe()
        stream.awaitConnect(completion: completion)
    }

    /// Gives the connection away (a duplicate of its descriptor lives on in another worker, with the
    /// TLS session): this connection's sources are cancelled and its copy closed, with no allocation
    /// or peer torn down.
    func handOver() {
        if let tls = transform.tls { worker.endHandshake(&tls.handshaking, client: client.ip) }
        worker.endUnallocated(&unallocated)
        transform = .plain  // the session moves with the descriptor
        becomePipe()
        relay = nil
        peerConnectionID = 0
        close(reason: .shutdown)
    }
}
