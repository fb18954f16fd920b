#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import STUN
import TernCore
import Testing
@testable import TernIO

/// PROXY protocol headers made by hand (HAProxy's "The PROXY protocol", versions 1 and 2), the
/// server the listener tests run against, and a client that sends a header before it speaks STUN.
enum ProxyHeaders {
    /// Section 2.2: the 12-byte v2 signature.
    static let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    /// "PROXY TCP4 198.51.100.7 127.0.0.1 40000 3478\r\n" (TCP6 for IPv6 addresses).
    static func v1(_ source: TransportAddress, _ destination: TransportAddress) -> [UInt8] {
        let family = source.ip.family == .ipv4 ? "TCP4" : "TCP6"
        return Array("PROXY \(family) \(source.ip) \(destination.ip) \(source.port) \(destination.port)\r\n".utf8)
    }

    /// A v2 PROXY command over STREAM (AF_INET or AF_INET6 by the source's family), with raw TLV bytes after the addresses.
    static func v2(_ source: TransportAddress, _ destination: TransportAddress, tlvs: [UInt8] = []) -> [UInt8] {
        let family: UInt8 = source.ip.family == .ipv4 ? 0x11 : 0x21
        let block = source.ip.bytes + destination.ip.bytes + port(source.port) + port(destination.port) + tlvs
        return signature + [0x21, family] + port(UInt16(block.count)) + block
    }

    /// v2 LOCAL (a health check of the proxy's own): no addresses, `length` bytes skipped.
    static func v2Local(skipping length: Int = 0) -> [UInt8] {
        signature + [0x20, 0x00] + port(UInt16(length)) + [UInt8](repeating: 0xAB, count: length)
    }

    static func port(_ p: UInt16) -> [UInt8] { [UInt8(p >> 8), UInt8(p & 0xFF)] }
}

/// The load balancer's address in these tests (`trusted`), and one that is not trusted.
let trustedProxyIP = IPAddress("127.0.0.3")!
let untrustedProxyIP = IPAddress.loopbackV4

/// A server with a `tcp` and a `tls` listener on 127.0.0.1, both `proxyProtocol: {"trusted": ["127.0.0.3/32"]}`,
/// the TURN users of `testTurnContext`, a ManualClock and `tls.handshakeTimeout` 10 s.
func startProxyServer(limits: LimitsConfig = LimitsConfig(), clock: ManualClock = testClock(),
                      settings: (inout TurnSettings) -> Void = { _ in }) throws -> Server {
    var turnSettings = TurnSettings()
    settings(&turnSettings)
    var logger = Logger(label: "tern.test")
    logger.logLevel = .warning
    let proxy = ProxyProtocolConfig(trusted: [CIDR("127.0.0.3/32")!])
    let tls = TLSContextHolder(try TLSFixture.shared.serverContext(), handshakeTimeout: 10)
    let server = Server(listeners: [ListenerConfig(transport: .tcp, address: v4, proxyProtocol: proxy),
                                    ListenerConfig(transport: .tls, address: v4, proxyProtocol: proxy)],
                        workerCount: 2,
                        handlerConfiguration: HandlerConfiguration(software: "Tern test", turn: testTurnContext(settings: turnSettings)),
                        relay: RelayConfig(ipv4: .loopbackV4, ipv6: .loopbackV6, portRange: 63300...63399),
                        limits: limits, tls: tls, clock: clock, logger: logger)
    try server.start()
    return server
}

extension Server {
    func listener(_ transport: ClientTransport) throws -> TransportAddress {
        try #require(bound.first { $0.transport == transport }?.address)
    }

    /// Connections whose PROXY header is still being read, on every worker.
    var pendingProxyHeaders: Int { workers.map { w in w.queue.sync { w.pendingProxy.count } }.reduce(0, +) }

    /// `/stats` → `proxyProtocol`.
    var proxyCounts: [String: UInt64] { snapshot(perUser: false).proxyProtocol }
}

/// Every descriptor the workers held at start, and no server-side socket of either listener left,
/// once the clients are gone (bounded wait: cancel handlers close on the worker queues).
func expectBaseline(_ server: Server, _ baseline: Int, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let tcp = try server.listener(.tcp), tls = try server.listener(.tls)
    let settled = eventually {
        server.openDescriptors().count == baseline && server.pendingProxyHeaders == 0
            && serverSocketsHeld(tcp) == 0 && serverSocketsHeld(tls) == 0
    }
    #expect(settled, "descriptors \(server.openDescriptors().count) (baseline \(baseline)), pending \(server.pendingProxyHeaders), held tcp \(serverSocketsHeld(tcp)) tls \(serverSocketsHeld(tls))",
            sourceLocation: sourceLocation)
}

/// Server-side sockets of `listener` that a descriptor still holds, from /proc/net/tcp: local
/// address the listener's, not LISTEN, inode not 0 (a socket the server closed is orphaned, inode 0,
/// while it finishes FIN_WAIT or TIME_WAIT). Per port, so other tests in the process do not count.
func serverSocketsHeld(_ listener: TransportAddress) -> Int {
    // Read to the end: String(contentsOfFile:) stops at the first 4 KiB of a /proc file.
    guard let data = FileHandle(forReadingAtPath: "/proc/net/tcp")?.readDataToEndOfFile() else { return -1 }
    let table = String(decoding: data, as: UTF8.self)
    let local = String(format: "0100007F:%04X", listener.port)
    return table.split(separator: "\n").dropFirst().filter { line in
        let f = line.split(separator: " ")
        return f.count > 9 && f[1] == local && f[3] != "0A" && f[9] != "0"
    }.count
}

/// A TCP client from `source` (127.0.0.3 unless told) that starts with a PROXY header, then speaks
/// STUN in the clear or over TLS.
final class ProxiedClient {
    let socket: TestSocket
    var tls: TLSStream?
    private var realm: String?
    private var nonce: String?

    init(to server: TransportAddress, from source: IPAddress = trustedProxyIP, header: [UInt8]?,
         tlsTrust: String? = nil) throws {
        socket = try TestSocket.connect(.tcp, to: server, from: source)
        if let header { socket.send(header) }
        if let tlsTrust { tls = try TLSStream(socket: socket, trust: tlsTrust) }
    }

    private var open = true

    deinit { close() }

    /// Closes the socket once (its descriptor number may be reused by then).
    func close() {
        guard open else { return }
        open = false
        socket.close()
    }

    func send(_ bytes: [UInt8]) {
        if let tls { tls.send(bytes) } else { socket.send(bytes) }
    }

    /// The next STUN message on the stream; nil on timeout or end of stream.
    func receive() -> Message? {
        let read: (Int) -> [UInt8]? = { n in self.tls.map { $0.receiveExactly(n) } ?? self.socket.receiveExactly(n) }
        guard let head = read(20) else { return nil }
        guard let body = read(Int(head[2]) << 8 | Int(head[3])) else { return nil }
        return try? Message.decode(head + body)
    }

    /// XOR-MAPPED-ADDRESS of a Binding answer.
    func binding() -> TransportAddress? {
        send(bindingRequest())
        return ProxiedClient.mapped(receive())
    }

    static func mapped(_ m: Message?) -> TransportAddress? {
        guard case .xorMappedAddress(let a)? = m?.first(.xorMappedAddress) else { return nil }
        return a
    }

    /// A request with the long-term credentials of alice, answering the 401 challenge once.
    func request(_ method: STUN.Method, _ attributes: [Attribute]) throws -> Message {
        for _ in 0..<2 {
            var attrs = attributes
            var key: [UInt8]? = nil
            if let realm, let nonce {
                attrs += [.username("alice"), .realm(realm), .nonce(nonce)]
                key = LongTermKey.md5(username: "alice", realm: realm, password: "wonderland")
            }
            let id = TransactionID.random()
            send(Message(type: MessageType(method: method, class: .request), transactionID: id, attributes: attrs)
                .encode(integrityKey: key, fingerprint: true))
            guard let answer = receive(), answer.transactionID == id else { throw TestFailure("no answer to \(method)") }
            guard answer.errorCode?.code == 401, realm == nil,
                  case .realm(let r)? = answer.first(.realm), case .nonce(let n)? = answer.first(.nonce) else { return answer }
            realm = r
            nonce = n
        }
        throw TestFailure("challenged twice")
    }

    func allocate() throws -> Message {
        try request(.allocate, [.requestedTransport(protocolNumber: 17)])
    }
}

extension TestSocket {
    /// True when the peer closes the stream (EOF or reset) within the timeout without sending a byte.
    func closedWithoutAnswer() -> Bool {
        var buf = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<1000 {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 4096, 0) }
            if n > 0 { return false }
            if n == 0 { return true }
            if errno != EINTR { return errno == ECONNRESET }
        }
        return false
    }

    func setNoDelay() {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }
}
