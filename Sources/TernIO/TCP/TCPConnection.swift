#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import STUN
import TernCore

/// One client stream connection. STUN over TCP is framed by the message's own length field
/// (RFC 8489 section 6.2.2); ChannelData on a stream is padded to a multiple of 4 (RFC 8656 section 12.5).
///
/// Reads drain the socket to EAGAIN each firing (bounded per firing). Replies are sent at once; what the
/// kernel does not take waits in a bounded queue drained by a write source that is resumed only while
/// there is something queued (back-pressure without busy loops). A client that stops reading until the
/// queue bound is reached is disconnected, so it cannot grow Tern's memory.
final class TCPConnection {
    enum CloseReason: String {
        case peerClosed = "peer closed"
        case malformed = "malformed stream"
        case slowReader = "write queue full"
        case error = "socket error"
        case shutdown = "shutdown"
        case idle = "idle"
    }

    let fd: Int32
    /// Worker-local id: a stream allocation's route names its connection by this, never by the fd
    /// (a descriptor number is reused as soon as it is closed).
    let id: UInt64
    let client: TransportAddress
    let local: TransportAddress
    let transport: ClientTransport
    unowned let worker: Worker

    private var readSource: DispatchSourceRead?
    /// Created on the first reply the kernel would not take at once; suspended while nothing is queued.
    private var writeSource: DispatchSourceWrite?
    private var writeSuspended = false
    private var closed = false
    private var pendingCancels = 0

    /// Received bytes not yet framed. Grows only as far as the largest legal frame.
    private var input: [UInt8]
    private var inputCount = 0
    /// Reply bytes the kernel has not taken yet, from `outputOffset` on.
    private var output: [UInt8] = []
    private var outputOffset = 0

    /// Monotonic second of the last bytes from the client (the worker's coarse clock).
    private(set) var lastActivity: UInt64

    // MARK: RFC 6062 raw mode
    /// Raw byte pipe instead of STUN framing: a peer connection of a TCP allocation, or a client data
    /// connection after ConnectionBind.
    private(set) var raw = false
    /// The other end of the pipe once ConnectionBind has joined the two.
    private(set) var pipe: TCPConnection?
    /// For a peer connection: its CONNECTION-ID and the relay (allocation) it belongs to.
    var peerConnectionID: UInt32 = 0
    var relay: RelayHandle?
    /// Still connecting to the peer (RFC 6062 section 5.2); the write source reports the outcome.
    private(set) var connecting = false
    /// Whether this connection counts against the per-client-IP cap (peer connections do not).
    var countsAgainstLimit = true
    /// Reading paused because the other end's queue is full (back-pressure across the pipe).
    private var readPaused = false
    /// Created (monotonic seconds): unbound peer connections are closed after 30 s.
    let createdAt: UInt64

    private let readChunk = 16 * 1024
    private let maxReadsPerFiring = 32

    init(fd: Int32, client: TransportAddress, local: TransportAddress, transport: ClientTransport, worker: Worker) {
        self.fd = fd
        self.id = worker.nextConnectionID()
        self.client = client
        self.local = local
        self.transport = transport
        self.worker = worker
        self.input = [UInt8](repeating: 0, count: readChunk)
        self.lastActivity = worker.handler.now
        self.createdAt = worker.handler.now
    }

    func start() {
        let rs = DispatchSource.makeReadSource(fileDescriptor: fd, queue: worker.queue)
        rs.setEventHandler { [unowned self] in self.readable() }
        rs.setCancelHandler { [self] in self.sourceCancelled() }
        readSource = rs
        pendingCancels = 1
        worker.closing.enter()
        rs.activate()
    }

    /// Starts watching for writability: a new write source the first time, a resume after that.
    private func watchWritable() {
        if let ws = writeSource {
            if writeSuspended {
                writeSuspended = false
                ws.resume()
            }
            return
        }
        let ws = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: worker.queue)
        ws.setEventHandler { [unowned self] in self.writable() }
        ws.setCancelHandler { [self] in self.sourceCancelled() }
        writeSource = ws
        pendingCancels += 1
        ws.activate()
    }

    // MARK: reading and framing

    // MARK: TLS (RFC 8489 section 6.2.3, RFC 8656 section 3.1: STUN/TURN over TLS-over-TCP)

    /// The TLS session of a `tls` listener's connection; nil for plain TCP.
    var tls: TLSSession?
    /// Counted in the worker's handshakes in flight until the TLS handshake completes or the connection closes.
    var handshaking = false
    private var cipher: [UInt8] = []
    private var plain: [UInt8] = []
    private var tlsOut: [UInt8] = []

    /// Reads ciphertext, decrypts it into `input`, answers handshake records, then frames.
    private func readableTLS(_ session: TLSSession) {
        if cipher.isEmpty { cipher = [UInt8](repeating: 0, count: readChunk) }
        var reads = 0
        while !closed && reads < maxReadsPerFiring {
            reads &+= 1
            guard let n = cipher.withUnsafeMutableBytes({ readOnce(into: $0) }) else { return }
            plain.removeAll(keepingCapacity: true)
            let progress: TLSProgress
            do {
                progress = try cipher.withUnsafeBytes { try session.receive(UnsafeRawBufferPointer(rebasing: $0[0..<n]), plaintext: &plain) }
            } catch {
                flushTLS()  // a fatal alert may be waiting
                worker.stats.tcpClosedMalformed &+= 1
                close(reason: .malformed)
                return
            }
            flushTLS()
            if session.handshakeComplete { worker.endHandshake(&handshaking) }
            if !plain.isEmpty {
                // Bounded: complete frames are consumed after every read, so what stays is less
                // than one frame plus one read's worth.
                guard inputCount + plain.count <= worker.limits.maxFrame + readChunk else {
                    close(reason: .malformed)
                    return
                }
                if input.count - inputCount < plain.count {
                    input.append(contentsOf: repeatElement(0, count: plain.count - (input.count - inputCount)))
                }
                input.withUnsafeMutableBytes { dst in
                    plain.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: dst[inputCount..<(inputCount + plain.count)]).copyMemory(from: $0) }
                }
                inputCount += plain.count
                if raw {
                    if !forwardRaw() { return }
                } else {
                    processFrames()
                }
            }
            if progress == .closed {
                close(reason: .peerClosed)
                return
            }
        }
    }

    /// One read(2): the byte count, or nil when reading stops for now (would block) or for good (end
    /// of stream or an error, and then the connection is closed).
    private func readOnce(into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        let outcome: IOOutcome<Int>
        do {
            outcome = try Posix.read(fd, into: buffer)
        } catch {
            close(reason: .error)
            return nil
        }
        switch outcome {
        case .wouldBlock:
            return nil
        case .done(0):
            close(reason: .peerClosed)
            return nil
        case .done(let n):
            lastActivity = worker.handler.now
            worker.stats.bytesReceived &+= UInt64(n)
            return n
        }
    }

    /// Sends whatever ciphertext the session has produced (handshake, alerts, records).
    private func flushTLS() {
        guard let tls, tls.pendingOutput > 0 else { return }
        tlsOut.removeAll(keepingCapacity: true)
        tls.takeOutput(into: &tlsOut)
        tlsOut.withUnsafeBytes { sendWire($0) }
    }

    private func readable() {
        worker.stats.readFirings &+= 1
        if let tls {
            readableTLS(tls)
            return
        }
        var reads = 0
        while !closed && reads < maxReadsPerFiring {
            reads &+= 1
            if inputCount == input.count {
                // Full without a complete frame: grow up to the largest legal frame, never past it.
                guard input.count < worker.limits.maxFrame else { close(reason: .malformed); return }
                input.append(contentsOf: repeatElement(0, count: min(input.count, worker.limits.maxFrame - input.count)))
            }
            let start = inputCount
            guard let n = input.withUnsafeMutableBytes({ readOnce(into: UnsafeMutableRawBufferPointer(rebasing: $0[start...])) }) else { return }
            inputCount &+= n
            if raw {
                if !forwardRaw() { return }
            } else {
                processFrames()
            }
        }
    }

    /// Raw mode: hands buffered bytes to the other end of the pipe. Without one yet (a peer
    /// connection before ConnectionBind), bytes wait in `input`, which stops reading when full:
    /// TCP's own window then holds the peer back (RFC 6062 section 5.3: the server buffers).
    /// Returns false when reading must stop for now.
    private func forwardRaw() -> Bool {
        guard let pipe else {
            if inputCount == input.count { pauseReading() ; return false }
            return true
        }
        if inputCount > 0 {
            input.withUnsafeBytes { pipe.send(UnsafeRawBufferPointer(rebasing: $0[0..<inputCount])) }
            inputCount = 0
        }
        if pipe.queuedBytes > worker.limits.maxQueuedBytes / 2 {
            pauseReading()
            pipe.onDrained = { [weak self] in self?.resumeReading() }
            return false
        }
        return true
    }

    var queuedBytes: Int { output.count - outputOffset }
    /// Called once when the output queue has drained (the pipe's back-pressure release).
    var onDrained: (() -> Void)?

    private func pauseReading() {
        guard !readPaused, let rs = readSource else { return }
        readPaused = true
        rs.suspend()
    }

    private func resumeReading() {
        guard readPaused, !closed, let rs = readSource else { return }
        readPaused = false
        rs.resume()
    }

    /// Whether ConnectionBind has joined this connection to its other end.
    var isJoined: Bool { pipe != nil }

    /// Bytes that arrived after the ConnectionBind request in the same read: raw data for the peer.
    func preload(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        if input.count - inputCount < bytes.count {
            input.append(contentsOf: repeatElement(0, count: bytes.count - (input.count - inputCount)))
        }
        input.withUnsafeMutableBytes { buf in
            bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: buf[inputCount..<(inputCount + bytes.count)]).copyMemory(from: $0) }
        }
        inputCount += bytes.count
    }

    /// Gives the descriptor away (its duplicate lives on in another worker): this connection's
    /// sources are cancelled and its copy closed, with no allocation or peer torn down.
    func handOver() {
        tls = nil  // the session moves with the descriptor
        raw = true
        relay = nil
        peerConnectionID = 0
        close(reason: .shutdown)
    }

    /// Switches to raw mode (a peer connection from the start, or a client connection after its
    /// ConnectionBind response).
    func becomeRaw() {
        raw = true
    }

    /// Joins two raw connections; bytes either one buffered so far are delivered.
    func join(_ other: TCPConnection) {
        raw = true
        other.raw = true
        pipe = other
        other.pipe = self
        if inputCount > 0 { _ = forwardRaw() }
        if other.inputCount > 0 { _ = other.forwardRaw() }
        other.resumeReading()
        resumeReading()
    }

    /// Starts a non-blocking connect; `completion(success)` runs on the worker queue.
    func startConnecting(completion: @escaping (Bool) -> Void) {
        connecting = true
        raw = true
        connectCompletion = completion
        watchWritable()
    }
    private var connectCompletion: ((Bool) -> Void)?

    private func processFrames() {
        var start = 0
        while !closed {
            let available = inputCount - start
            let length: Int
            // Channel numbers of RFC 5766's wider range frame too; the handler decides what it accepts.
            let frame = input.withUnsafeBytes { buf in
                StreamFrame.frameLength(UnsafeRawBufferPointer(rebasing: buf[start..<inputCount]),
                                        channels: ChannelData.rfc5766Channels)
            }
            switch frame {
            case .needMore:
                length = -1
            case .stun(let n), .channelData(let n):
                length = n
            case .invalid:
                worker.stats.tcpClosedMalformed &+= 1
                close(reason: .malformed)
                return
            }
            guard length > 0, length <= available else {
                if length > worker.limits.maxFrame {
                    worker.stats.tcpClosedMalformed &+= 1
                    close(reason: .malformed)
                    return
                }
                break
            }
            let context = PacketContext(client: client, local: local, transport: transport, connection: id)
            let result = input.withUnsafeBytes { buf in
                worker.handler.handle(UnsafeRawBufferPointer(rebasing: buf[start..<(start + length)]),
                                      context: context, response: worker.streamResponse)
            }
            start &+= length
            switch result {
            case .reply(let n):
                send(UnsafeRawBufferPointer(rebasing: worker.streamResponse[0..<n]))
            case .noReply:
                break
            case .malformed:
                worker.stats.tcpClosedMalformed &+= 1
                close(reason: .malformed)
                return
            case .bindDataConnection(let n, let id, let owner):
                // RFC 6062 section 5.4: the success response, then raw bytes from here on.
                let reply = Array(UnsafeRawBufferPointer(rebasing: worker.streamResponse[0..<n]))
                let leftover = input.withUnsafeBytes { Array(UnsafeRawBufferPointer(rebasing: $0[start..<inputCount])) }
                inputCount = 0  // everything up to here was STUN; the leftover is handed over separately
                worker.bindDataConnection(self, connectionID: id, owner: owner, reply: reply, leftover: leftover)
                return
            }
        }
        // Keep the unframed tail at the front of the buffer.
        if start > 0 {
            let remaining = inputCount - start
            if remaining > 0 {
                input.withUnsafeMutableBytes { buf in
                    guard let base = buf.baseAddress else { return }
                    memmove(base, base + start, remaining)
                }
            }
            inputCount = remaining
        }
    }

    // MARK: writing with back-pressure

    /// Relayed peer data for this client: like `send`, but dropped (and counted) rather than queued
    /// once half the queue bound is in use. A client that reads slowly loses datagrams, as it would
    /// over UDP, and keeps its connection; its queue cannot grow past the bound.
    func sendRelayed(_ bytes: UnsafeRawBufferPointer) {
        guard !closed else { return }
        if output.count - outputOffset > worker.limits.maxQueuedBytes / 2 {
            worker.stats.streamRelayDropped &+= 1
            return
        }
        send(bytes)
    }

    /// Sends application bytes: encrypted first on a TLS connection.
    func send(_ bytes: UnsafeRawBufferPointer) {
        guard !closed, bytes.count > 0 else { return }
        guard let tls else { sendWire(bytes); return }
        do {
            try tls.send(bytes)
        } catch {
            flushTLS()
            close(reason: .error)
            return
        }
        flushTLS()
    }

    /// Sends `bytes` now if nothing is queued ahead of them, queueing what the kernel does not take.
    private func sendWire(_ bytes: UnsafeRawBufferPointer) {
        guard !closed, bytes.count > 0 else { return }
        var offset = 0
        if output.count == outputOffset {
            while offset < bytes.count {
                do {
                    switch try Posix.send(fd, UnsafeRawBufferPointer(rebasing: bytes[offset...])) {
                    case .done(let n):
                        offset &+= n
                        worker.stats.bytesSent &+= UInt64(n)
                    case .wouldBlock:
                        break
                    }
                } catch {
                    close(reason: .error)
                    return
                }
                if offset < bytes.count { break }
            }
        }
        guard offset < bytes.count else { return }
        if output.count - outputOffset + (bytes.count - offset) > worker.limits.maxQueuedBytes {
            worker.stats.tcpClosedSlowReader &+= 1
            close(reason: .slowReader)
            return
        }
        if outputOffset > 0 && outputOffset == output.count {
            output.removeAll(keepingCapacity: true)
            outputOffset = 0
        }
        output.append(contentsOf: bytes[offset...])
        watchWritable()
    }

    private func writable() {
        if connecting {
            connecting = false
            var error: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len)
            let completion = connectCompletion
            connectCompletion = nil
            if error != 0 {
                completion?(false)
                close(reason: .error)
                return
            }
            completion?(true)
        }
        while !closed && outputOffset < output.count {
            let outcome: IOOutcome<Int>
            do {
                outcome = try output.withUnsafeBytes { buf throws(SystemError) in
                    try Posix.send(fd, UnsafeRawBufferPointer(rebasing: buf[outputOffset...]))
                }
            } catch {
                close(reason: .error)
                return
            }
            switch outcome {
            case .done(let n):
                outputOffset &+= n
                worker.stats.bytesSent &+= UInt64(n)
            case .wouldBlock:
                return
            }
        }
        if outputOffset == output.count {
            output.removeAll(keepingCapacity: output.capacity <= 64 * 1024)
            outputOffset = 0
            if let drained = onDrained {
                onDrained = nil
                drained()
            }
            if !writeSuspended, let ws = writeSource {
                writeSuspended = true
                ws.suspend()
            }
        }
    }

    // MARK: closing

    /// Cancels both sources; the descriptor is closed once both cancel handlers have run.
    func close(reason: CloseReason) {
        guard !closed else { return }
        if let tls, reason == .shutdown || reason == .idle || reason == .peerClosed {
            tls.shutdown()  // close_notify, best effort
            flushTLS()
        }
        closed = true
        worker.endHandshake(&handshaking)
        worker.stats.tcpClosed &+= 1
        worker.logger.debug("tcp connection closed", metadata: ["client": "\(client)", "reason": "\(reason.rawValue)"])
        // An allocation made over this connection ends with it (RFC 8656 section 3.1).
        if !raw { worker.handler.streamClosed(client: client, local: local, transport: transport) }
        // A connect that fails answers its Connect with 447 first (RFC 6062 section 5.2)...
        if connecting, let completion = connectCompletion {
            connecting = false
            connectCompletion = nil
            completion(false)
        }
        // ...then the peer connection is forgotten.
        if let relay, peerConnectionID != 0 {
            worker.handler.peerConnectionClosed(connectionID: peerConnectionID, relay: relay)
        }
        // A suspended read source runs its cancel handler only once resumed.
        if readPaused, let rs = readSource {
            readPaused = false
            rs.resume()
        }
        let other = pipe
        pipe = nil
        onDrained = nil
        other?.pipe = nil
        other?.close(reason: .peerClosed)
        output = []
        outputOffset = 0
        readSource?.cancel()
        if let ws = writeSource {
            ws.cancel()
            // A suspended source runs its cancel handler only once resumed.
            if writeSuspended {
                writeSuspended = false
                ws.resume()
            }
        }
    }

    private func sourceCancelled() {
        pendingCancels -= 1
        guard pendingCancels == 0 else { return }
        Posix.close(fd)
        readSource = nil
        writeSource = nil
        worker.connections[fd] = nil
        worker.connectionsByID[id] = nil
        if countsAgainstLimit { worker.connectionLimiter.release(client.ip) }
        worker.closing.leave()
    }
}
