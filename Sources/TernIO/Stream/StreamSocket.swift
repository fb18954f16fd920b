import Dispatch
import STUN

/// The socket half of a stream connection: one long-lived read source, a write source made on the
/// first write the kernel would not take and suspended while nothing is queued (back-pressure without
/// busy loops), a bounded write queue, and a close that happens once. It knows nothing of TLS or of
/// what the bytes mean; its owner (`StreamConnection`) learns of events through the closures it gives.
final class StreamSocket {
    /// Why a stream connection ended (logs).
    enum CloseReason: String {
        case peerClosed = "peer closed"
        case malformed = "malformed stream"
        case slowReader = "write queue full"
        case error = "socket error"
        case shutdown = "shutdown"
        case idle = "idle"
    }

    /// The outcome of one read.
    enum ReadOutcome {
        case bytes(Int)
        case wouldBlock
        case endOfStream
        case failed
    }

    let socket: Socket
    unowned let worker: Worker

    private var readSource: DispatchSourceRead?
    private var writeSource: DispatchSourceWrite?
    private var writeSuspended = false
    private(set) var readPaused = false
    private(set) var closed = false
    private var pendingCancels = 0

    /// Bytes the kernel has not taken yet, from `outputOffset` on.
    private var output: [UInt8] = []
    private var outputOffset = 0
    /// Called once when the write queue has drained (the pipe's back-pressure release).
    var onDrained: (() -> Void)?
    /// Pending outcome of a non-blocking connect (RFC 6062 section 5.2), reported when writable.
    private var connectCompletion: ((Bool) -> Void)?

    /// Set by the owner before `start`: the read source fired; a write failed or the queue bound was
    /// hit (the owner closes the connection); both sources are gone and the descriptor is closed.
    var readable: () -> Void = {}
    var failed: (CloseReason) -> Void = { _ in }
    var released: () -> Void = {}

    init(socket: Socket, worker: Worker) {
        self.socket = socket
        self.worker = worker
    }

    func start() {
        let rs = DispatchSource.makeReadSource(fileDescriptor: socket.fd, queue: worker.queue)
        rs.setEventHandler { [unowned self] in self.readable() }
        rs.setCancelHandler { [self] in self.sourceCancelled() }
        readSource = rs
        pendingCancels = 1
        worker.closing.enter()
        rs.activate()
    }

    var queuedBytes: Int { output.count - outputOffset }
    var isConnecting: Bool { connectCompletion != nil }

    // MARK: reading

    /// One read(2).
    func read(into buffer: UnsafeMutableRawBufferPointer) -> ReadOutcome {
        do {
            switch try Posix.read(socket.fd, into: buffer) {
            case .wouldBlock: return .wouldBlock
            case .done(0): return .endOfStream
            case .done(let n):
                worker.stats.bytesReceived &+= UInt64(n)
                return .bytes(n)
            }
        } catch {
            return .failed
        }
    }

    func pauseReading() {
        guard !readPaused, let rs = readSource else { return }
        readPaused = true
        rs.suspend()
    }

    func resumeReading() {
        guard readPaused, !closed, let rs = readSource else { return }
        readPaused = false
        rs.resume()
    }

    // MARK: writing with back-pressure

    /// Sends `bytes` now if nothing is queued ahead of them, queueing what the kernel does not take.
    /// Past `maxQueuedBytes` queued the reader is too slow: `failed(.slowReader)`.
    func write(_ bytes: UnsafeRawBufferPointer) {
        guard !closed, bytes.count > 0 else { return }
        var offset = 0
        if output.count == outputOffset {
            while offset < bytes.count {
                do {
                    switch try Posix.send(socket.fd, UnsafeRawBufferPointer(rebasing: bytes[offset...])) {
                    case .done(let n):
                        offset &+= n
                        worker.stats.bytesSent &+= UInt64(n)
                    case .wouldBlock:
                        break
                    }
                } catch {
                    failed(.error)
                    return
                }
                if offset < bytes.count { break }
            }
        }
        guard offset < bytes.count else { return }
        if output.count - outputOffset + (bytes.count - offset) > worker.limits.streamQueueBytes {
            worker.stats.tcpClosedSlowReader &+= 1
            failed(.slowReader)
            return
        }
        if outputOffset > 0 && outputOffset == output.count {
            output.removeAll(keepingCapacity: true)
            outputOffset = 0
        }
        output.append(contentsOf: bytes[offset...])
        watchWritable()
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
        let ws = DispatchSource.makeWriteSource(fileDescriptor: socket.fd, queue: worker.queue)
        ws.setEventHandler { [unowned self] in self.writable() }
        ws.setCancelHandler { [self] in self.sourceCancelled() }
        writeSource = ws
        pendingCancels += 1
        ws.activate()
    }

    /// Waits for a non-blocking connect to finish; `completion(success)` runs on the worker's queue
    /// (with false, too, when the connection closes first).
    func awaitConnect(completion: @escaping (Bool) -> Void) {
        connectCompletion = completion
        watchWritable()
    }

    /// Reports a pending connect as failed (the connection is closing).
    func abandonConnect() {
        guard let completion = connectCompletion else { return }
        connectCompletion = nil
        completion(false)
    }

    private func writable() {
        if let completion = connectCompletion {
            connectCompletion = nil
            // A failed SO_ERROR read is a failed connect, never "connected".
            if socket.connectError() != nil {
                completion(false)
                failed(.error)
                return
            }
            completion(true)
        }
        while !closed && outputOffset < output.count {
            let outcome: IOOutcome<Int>
            do {
                outcome = try output.withUnsafeBytes { buf throws(SystemError) in
                    try Posix.send(socket.fd, UnsafeRawBufferPointer(rebasing: buf[outputOffset...]))
                }
            } catch {
                failed(.error)
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

    /// Cancels both sources, once; the descriptor is closed once both cancel handlers have run.
    func cancel() {
        guard !closed else { return }
        closed = true
        onDrained = nil
        output = []
        outputOffset = 0
        // A suspended source runs its cancel handler only once resumed.
        if readPaused, let rs = readSource {
            readPaused = false
            rs.resume()
        }
        readSource?.cancel()
        if let ws = writeSource {
            ws.cancel()
            if writeSuspended {
                writeSuspended = false
                ws.resume()
            }
        }
    }

    private func sourceCancelled() {
        pendingCancels -= 1
        guard pendingCancels == 0 else { return }
        socket.close()
        readSource = nil
        writeSource = nil
        released()
        worker.closing.leave()
    }
}
