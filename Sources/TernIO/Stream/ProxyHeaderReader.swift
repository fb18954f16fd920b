import Dispatch
import Logging
import STUN
import TernCore

/// A connection accepted on a `proxyProtocol` listener until its PROXY protocol header is read
/// (HAProxy's "The PROXY protocol", versions 1 and 2). Made only for a source in `trusted`, and only
/// after the server-wide count of connections without an allocation admits it, so an untrusted or
/// surplus connection costs no buffer.
///
/// The header is read without taking a byte beyond it (section 2 of the spec: the receiver must not
/// consume what follows, here a TLS ClientHello or the first STUN message): each read first peeks,
/// the parser says how many of the peeked bytes are header, and exactly those are read. While the
/// header is incomplete every byte seen so far is header (`ProxyHeaderParse.needMore`), so they are
/// all consumed and the level-triggered source does not fire again until more arrive.
///
/// Once complete, the connection goes to its listener as if accepted from the header's source
/// address: that address is the client everywhere (XOR-MAPPED-ADDRESS, the 5-tuple, per-IP limits,
/// the admin API, the logs). A malformed header, a connection closed before its header, or one that
/// sends none within `tls.handshakeTimeout`, is closed and counted.
final class ProxyHeaderReader {
    enum Failure { case malformed, missing, timeout, shutdown }

    let id: UInt64
    /// The load balancer's address (the TCP peer).
    let proxy: TransportAddress
    let local: TransportAddress
    let createdAt: UInt64
    unowned let worker: Worker
    /// The accepted connection (`Server.openDescriptors` lists it while the header is read).
    let socket: Socket
    private let deliver: (Socket, TransportAddress, TransportAddress) -> Void
    private var source: DispatchSourceRead?
    private let buffer: UnsafeMutableRawBufferPointer
    private var count = 0
    /// Holds one count of `connectionsWithoutAllocation` until handed over or closed.
    private var unallocated = true

    /// `deliver(socket, client, local)` receives the connection (a duplicate descriptor: the
    /// original closes with this reader's source) with the header's client address.
    init(socket: Socket, proxy: TransportAddress, local: TransportAddress, worker: Worker,
         deliver: @escaping (Socket, TransportAddress, TransportAddress) -> Void) {
        self.socket = socket
        self.proxy = proxy
        self.local = local
        self.worker = worker
        self.deliver = deliver
        self.id = worker.nextConnectionID()
        self.createdAt = worker.handler.now
        self.buffer = .allocate(byteCount: ProxyHeader.maxLength, alignment: 1)
    }

    deinit { buffer.deallocate() }

    func start() {
        worker.pendingProxy[id] = self
        source = worker.makeReadSource(socket, readable: { [unowned self] in self.readable() })
    }

    private func readable() {
        worker.stats.readFirings &+= 1
        guard source != nil else { return }
        let free = UnsafeMutableRawBufferPointer(rebasing: buffer[count...])
        let seen: Int
        do {
            switch try Posix.peek(socket.fd, into: free) {
            case .wouldBlock: return
            case .done(0): return close(reason: .missing)
            case .done(let n): seen = n
            }
        } catch {
            return close(reason: .missing)
        }
        switch ProxyHeader.parse(UnsafeRawBufferPointer(rebasing: buffer[0..<(count + seen)])) {
        case .needMore:
            guard consume(seen), count < ProxyHeader.maxLength else { return close(reason: .malformed) }
        case .complete(let header, let length):
            guard length > count, consume(length - count) else { return close(reason: .malformed) }
            finish(header)
        case .invalid(let reason):
            worker.logger.debug("PROXY protocol header refused", metadata: ["proxy": "\(proxy)", "reason": "\(reason)"])
            close(reason: .malformed)
        }
    }

    /// Reads `n` bytes that a peek has shown are there and are header.
    private func consume(_ n: Int) -> Bool {
        let target = UnsafeMutableRawBufferPointer(rebasing: buffer[count..<(count + n)])
        guard case .done(let got)? = try? Posix.read(socket.fd, into: target), got == n else { return false }
        count += n
        return true
    }

    private func finish(_ header: ProxyHeader) {
        // LOCAL (v2) and UNKNOWN (v1): the proxy's own connection, e.g. a health check.
        let client = header.source ?? proxy
        guard let handed = try? socket.duplicate() else { return close(reason: .missing) }
        unallocated = false
        end()
        worker.stats.proxyAccepted &+= 1
        deliver(handed, client, local)
    }

    /// Closes the connection and counts why.
    func close(reason failure: Failure) {
        guard source != nil else { return }
        switch failure {
        case .malformed: worker.stats.proxyMalformed &+= 1
        case .missing, .timeout: worker.stats.proxyMissing &+= 1
        case .shutdown: break
        }
        worker.endUnallocated(&unallocated)
        end()
    }

    private func end() {
        worker.pendingProxy[id] = nil
        source?.cancel()  // its cancel handler closes the descriptor
        source = nil
    }
}
