import Dispatch
import Logging
import STUN
import TernCore

/// One stream connection: a client's TCP or TLS connection, or an RFC 6062 peer connection. Three
/// parts: the `StreamSocket` (sources, bounded write queue, close-once), the `ByteTransform` (plain
/// or TLS) and the `StreamRole` (STUN framing, or a pipe to the other end).
///
/// Reads drain the socket to EAGAIN each firing (bounded per firing). Replies are sent at once; what
/// the kernel does not take waits in the stream socket's bounded queue. A client that stops reading
/// until the queue bound is reached is disconnected, so it cannot grow Tern's memory.
final class StreamConnection {
    /// The largest framed message: a STUN header plus the 16-bit length's maximum, padded (RFC 8489
    /// section 6.2.2), or a ChannelData message (RFC 8656 section 12.5).
    static let maxFrame = 20 + 65_535 + 3

    typealias CloseReason = StreamSocket.CloseReason

    let stream: StreamSocket
    /// Worker-local id: a stream allocation's route names its connection by this, never by the
    /// descriptor (a descriptor number is reused as soon as it is closed).
    let id: UInt64
    let client: TransportAddress
    let local: TransportAddress
    let transport: ClientTransport
    unowned let worker: Worker

    var transform: ByteTransform
    var role: StreamRole
    private(set) var closed = false

    /// Received bytes not yet framed or forwarded.
    var input: InputBuffer
    /// Monotonic second of the last complete message from the client (the worker's coarse clock).
    /// Stray bytes, a byte at a time, do not count: they cannot keep an idle connection alive.
    var lastActivity: UInt64
    /// Created (monotonic seconds): unbound peer connections are closed after 30 s.
    let createdAt: UInt64

    // RFC 6062 peer connections
    /// For a peer connection: its CONNECTION-ID and the relay (allocation) it belongs to.
    var peerConnectionID: UInt32 = 0
    var relay: RelayHandle?
    /// Whether this connection counts against the per-client-IP cap (peer connections do not).
    var countsAgainstLimit = true
    /// Counted in the server's connections without an allocation (`connectionsWithoutAllocation`)
    /// until it first carries an allocation, becomes a data connection, or closes.
    var unallocated = false
    /// Whether the connection has carried a message other than a ConnectionBind request: RFC 6062
    /// section 5.4 wants ConnectionBind on a new connection (`PacketContext.streamInUse`).
    var carriedOtherMessage = false

    /// The largest read, and what `input` starts at: small, so that a connection that never sends a
    /// complete message holds little; it grows when a read fills it.
    let readChunk = 16 * 1024
    static let initialInput = 2048
    private let maxReadsPerFiring = 32

    init(socket: Socket, client: TransportAddress, local: TransportAddress, transport: ClientTransport,
         transform: ByteTransform = .plain, role: StreamRole = .stun(StreamFramer()), worker: Worker) {
        self.stream = StreamSocket(socket: socket, worker: worker)
        self.id = worker.nextConnectionID()
        self.client = client
        self.local = local
        self.transport = transport
        self.transform = transform
        self.role = role
        self.worker = worker
        self.input = InputBuffer(capacity: StreamConnection.initialInput)
        self.lastActivity = worker.handler.now
        self.createdAt = worker.handler.now
    }

    /// Registers the connection with its worker and starts reading.
    func start() {
        worker.connections[id] = self
        stream.readable = { [unowned self] in self.readable() }
        stream.failed = { [unowned self] reason in self.close(reason: reason) }
        stream.released = { [unowned self] in self.released() }
        stream.start()
    }

    /// The TLS session of a `tls` listener's connection; nil for plain TCP.
    var tls: TLSSession? { transform.tls?.session }
    /// Whether the connection is an RFC 6062 pipe rather than STUN-framed.
    var raw: Bool { role.isPipe }

    // MARK: reading

    private func readable() {
        worker.stats.readFirings &+= 1
        if let tls = transform.tls {
            readableTLS(tls)
            return
        }
        var reads = 0
        while !closed && reads < maxReadsPerFiring {
            reads &+= 1
            if input.isFull {
                // Full without a complete frame: grow up to the largest legal frame, never past it.
                guard input.capacity < StreamConnection.maxFrame else { close(reason: .malformed); return }
                input.reserve(min(input.capacity, StreamConnection.maxFrame - input.capacity))
            }
            let free = input.capacity - input.count
            let outcome = input.withFreeSpace { stream.read(into: $0) }
            guard let n = received(outcome) else { return }
            input.count &+= n
            // A read that filled the buffer: double it (up to one read chunk) for the next one.
            if n == free, input.capacity < readChunk { input.reserve(input.capacity) }
            guard deliverInput() else { return }
        }
    }

    /// Reads ciphertext, decrypts it into `input`, answers handshake records, then frames.
    private func readableTLS(_ tls: TLSTransform) {
        var reads = 0
        while !closed && reads < maxReadsPerFiring {
            reads &+= 1
            guard let n = received(tls.read(from: stream)) else { return }
            let progress: TLSProgress
            do {
                progress = try tls.decrypt(count: n)
            } catch {
                tls.flush(to: stream)  // a fatal alert may be waiting
                worker.stats.tcpClosedMalformed &+= 1
                close(reason: .malformed)
                return
            }
            tls.flush(to: stream)
            if tls.handshakeComplete { worker.endHandshake(&tls.handshaking, client: client.ip) }
            if !tls.plain.isEmpty {
                // Bounded: complete frames are consumed after every read, so what stays is less
                // than one frame plus one read's worth.
                guard input.count + tls.plain.count <= StreamConnection.maxFrame + readChunk else {
                    close(reason: .malformed)
                    return
                }
                tls.plain.withUnsafeBytes { input.append($0) }
                guard deliverInput() else { return }
            }
            if progress == .closed {
                close(reason: .peerClosed)
                return
            }
        }
    }

    /// The byte count of one read, or nil when reading stops for now (would block) or for good (end
    /// of stream or an error, and then the connection is closed).
    private func received(_ outcome: StreamSocket.ReadOutcome) -> Int? {
        switch outcome {
        case .wouldBlock:
            return nil
        case .endOfStream:
            close(reason: .peerClosed)
            return nil
        case .failed:
            close(reason: .error)
            return nil
        case .bytes(let n):
            return n
        }
    }

    /// Hands what is in `input` to the role. False when reading must stop for now.
    private func deliverInput() -> Bool {
        switch role {
        case .stun(let framer):
            processFrames(framer)
            return true
        case .pipe:
            return forwardPipe()
        }
    }

    // MARK: sending

    /// Relayed peer data for this client: like `send`, but dropped (and counted) rather than queued
    /// once half the queue bound is in use. A client that reads slowly loses datagrams, as it would
    /// over UDP, and keeps its connection; its queue cannot grow past the bound.
    func sendRelayed(_ bytes: UnsafeRawBufferPointer) {
        guard !closed else { return }
        if stream.queuedBytes > worker.limits.streamQueueBytes / 2 {
            worker.stats.streamRelayDropped &+= 1
            return
        }
        send(bytes)
    }

    /// Sends application bytes: encrypted first on a TLS connection.
    func send(_ bytes: UnsafeRawBufferPointer) {
        guard !closed, bytes.count > 0 else { return }
        guard let tls = transform.tls else { stream.write(bytes); return }
        do {
            try tls.encrypt(bytes)
        } catch {
            tls.flush(to: stream)
            close(reason: .error)
            return
        }
        tls.flush(to: stream)
    }

    // MARK: closing

    /// Ends the connection once: close_notify on TLS, the allocation or peer connection it carried
    /// is told, the other end of a pipe closes too, and the stream socket's sources are cancelled.
    func close(reason: CloseReason) {
        guard !closed else { return }
        if let tls = transform.tls, reason == .shutdown || reason == .idle || reason == .peerClosed {
            tls.shutdown(to: stream)  // close_notify, best effort
        }
        closed = true
        if let tls = transform.tls { worker.endHandshake(&tls.handshaking, client: client.ip) }
        worker.endUnallocated(&unallocated)
        worker.stats.tcpClosed &+= 1
        worker.logger.debug("tcp connection closed", metadata: ["client": "\(client)", "reason": "\(reason.rawValue)"])
        // An allocation made over this connection ends with it (RFC 8656 section 3.1).
        if !role.isPipe { worker.handler.streamClosed(client: client, local: local, transport: transport) }
        // A connect that fails answers its Connect with 447 first (RFC 6062 section 5.2)...
        stream.abandonConnect()
        // ...then the peer connection is forgotten.
        if let relay, peerConnectionID != 0 {
            worker.handler.peerConnectionClosed(connectionID: peerConnectionID, relay: relay)
        }
        let other = role.peer
        if other != nil { role = .pipe(nil) }
        if let other {
            other.role = .pipe(nil)
            other.close(reason: .peerClosed)
        }
        stream.cancel()
    }

    /// Both sources are gone and the descriptor is closed.
    private func released() {
        worker.connections[id] = nil
        if countsAgainstLimit { worker.connectionLimiter.release(client.ip) }
    }
}
