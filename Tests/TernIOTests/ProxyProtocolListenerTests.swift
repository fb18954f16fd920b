#if canImport(Glibc)
import Glibc
#endif
import Foundation
import HummingbirdTesting
import STUN
@testable import TernAdmin
import TernCore
import Testing
@testable import TernIO

/// `listeners[].proxyProtocol` over real loopback sockets: a client bound to 127.0.0.3 (the trusted
/// proxy) sends hand-made PROXY protocol headers; the header's source is then the client everywhere.
@Suite("PROXY protocol on tcp and tls listeners", .serialized)
struct ProxyProtocolListenerTests {
    static let clientV4 = TransportAddress("198.51.100.7:40000")!
    static let clientV6 = TransportAddress("[2001:db8::7]:40000")!

    @Test("v1 and v2 (INET, INET6, with TLVs): XOR-MAPPED-ADDRESS is the header's source, with the request in the same write, in the next write, or the header byte by byte")
    func mappedAddress() throws {
        let server = try startProxyServer()
        defer { server.stop() }
        let baseline = server.openDescriptors().count
        let tcp = try server.listener(.tcp)
        let tcp6 = TransportAddress(ip: .loopbackV6, port: tcp.port)
        // PP2_TYPE_ALPN "h2" and an empty PP2_TYPE_NOOP: TLVs are skipped, not misread as the request.
        let tlvs: [UInt8] = [0x01, 0x00, 0x02, 0x68, 0x32, 0x04, 0x00, 0x00]
        var cases: [(String, (TransportAddress) -> [UInt8], TransportAddress)] = []
        for (i, base) in [Self.clientV4, Self.clientV6].enumerated() {
            let family = i == 0 ? "4" : "6", destination = i == 0 ? tcp : tcp6
            cases.append(("v1 TCP\(family)", { ProxyHeaders.v1($0, destination) }, base))
            cases.append(("v2 INET\(i == 0 ? "" : "6")", { ProxyHeaders.v2($0, destination) }, base))
        }
        cases.append(("v2 INET with TLVs", { ProxyHeaders.v2($0, tcp, tlvs: tlvs) }, Self.clientV4))
        var port: UInt16 = 41000, connections = 0
        for (name, header, base) in cases {
            for delivery in ["one write", "two writes", "byte by byte"] {
                port += 1
                let source = TransportAddress(ip: base.ip, port: port)
                let bytes = header(source)
                let client = try ProxiedClient(to: tcp, header: nil)
                defer { client.close() }
                connections += 1
                let first = TransactionID.random(), second = TransactionID.random()
                let requests = bindingRequest(first) + bindingRequest(second)
                switch delivery {
                case "one write":
                    client.socket.send(bytes + requests)
                case "two writes":
                    client.socket.send(bytes)
                    usleep(20_000)
                    client.socket.send(requests)
                default:
                    client.socket.setNoDelay()
                    for b in bytes.dropLast() {
                        client.socket.send([b])
                        usleep(1_000)
                    }
                    // All but the last byte: the reader still waits, and has handed nothing on.
                    #expect(eventually { server.pendingProxyHeaders == 1 }, "\(name)")
                    #expect(server.proxyCounts["accepted"] == UInt64(connections - 1), "\(name)")
                    client.socket.send([bytes.last!])
                    usleep(1_000)
                    client.socket.send(Array(requests[0..<7]))
                    usleep(5_000)
                    client.socket.send(Array(requests[7...]))
                }
                // Both requests answered, in order: not a byte after the header was taken with it.
                let a = client.receive(), b = client.receive()
                #expect(a?.transactionID == first && b?.transactionID == second, "\(name), \(delivery)")
                #expect(ProxiedClient.mapped(a) == source, "\(name), \(delivery): \(String(describing: a))")
                #expect(ProxiedClient.mapped(b) == source, "\(name), \(delivery)")
            }
        }
        #expect(server.proxyCounts == ["accepted": UInt64(connections), "untrusted": 0, "malformed": 0, "missing": 0])
        #expect(server.stats().io.tcpAccepted == UInt64(connections))
        try expectBaseline(server, baseline)
    }

    @Test("tls: the header precedes the ClientHello (its own write, or the same one); the Binding inside TLS maps to the header's source")
    func tls() throws {
        let server = try startProxyServer()
        defer { server.stop() }
        let baseline = server.openDescriptors().count
        let address = try server.listener(.tls)
        let cert = TLSFixture.shared.cert

        let v1Source = TransportAddress(ip: Self.clientV4.ip, port: 42001)
        let viaV1 = try ProxiedClient(to: address, header: ProxyHeaders.v1(v1Source, address), tlsTrust: cert)
        defer { viaV1.close() }
        #expect(viaV1.tls?.alpn == "stun.turn")
        #expect(viaV1.binding() == v1Source)

        let v6Source = TransportAddress(ip: Self.clientV6.ip, port: 42002)
        let viaV2 = try ProxiedClient(to: address, header: ProxyHeaders.v2(v6Source, TransportAddress(ip: .loopbackV6, port: address.port)),
                                      tlsTrust: cert)
        defer { viaV2.close() }
        #expect(viaV2.binding() == v6Source)

        // The header and the first flight in one segment: the ClientHello must be left to TLS.
        let sameSource = TransportAddress(ip: Self.clientV4.ip, port: 42003)
        let socket = try TestSocket.connect(.tcp, to: address, from: trustedProxyIP)
        defer { socket.close() }
        let tlsClient = TLSTestClient(alpn: ["stun.turn"], trust: cert)
        tlsClient.handshake()
        socket.send(ProxyHeaders.v2(sameSource, address) + tlsClient.output())
        for _ in 0..<20 where !tlsClient.handshakeDone {
            guard let raw = socket.receive(), !raw.isEmpty else { break }
            tlsClient.feed(raw)
            #expect(tlsClient.handshake() >= 0)
            let out = tlsClient.output()
            if !out.isEmpty { socket.send(out) }
        }
        try #require(tlsClient.handshakeDone, "TLS handshake after a header in the same write")
        tlsClient.write(bindingRequest())
        socket.send(tlsClient.output())
        var plain: [UInt8] = []
        for _ in 0..<20 where plain.count < 20 {
            guard let raw = socket.receive(), !raw.isEmpty else { break }
            tlsClient.feed(raw)
            plain += tlsClient.read().bytes
        }
        #expect(ProxiedClient.mapped(try? Message.decode(plain)) == sameSource)

        #expect(server.proxyCounts["accepted"] == 3)
        #expect(server.snapshot(perUser: false).connections["tls"] == 3)
        for c in [viaV1, viaV2] { c.close() }
        socket.close()
        try expectBaseline(server, baseline)
    }

    @Test("Allocate through a proxied connection: the 5-tuple, allocationInfos and GET /allocations carry the header's address; LOCAL and UNKNOWN use the proxy's own")
    func allocateAndAdmin() async throws {
        let server = try startProxyServer()
        defer { server.stop() }
        let baseline = server.openDescriptors().count
        let tcp = try server.listener(.tcp)
        let client = try ProxiedClient(to: tcp, header: ProxyHeaders.v2(Self.clientV4, tcp))
        defer { client.close() }
        let allocated = try client.allocate()
        #expect(allocated.type.messageClass == .successResponse, "\(allocated)")
        #expect(ProxiedClient.mapped(allocated) == Self.clientV4)
        #expect(relayedAddresses(allocated).count == 1)
        let infos = server.allocationInfos(user: nil, client: nil)
        #expect(infos.map(\.client) == ["\(Self.clientV4)"])
        #expect(infos.first?.transport == "tcp")
        #expect(infos.first?.server == "\(tcp)")
        // The allocation is found by the header's 5-tuple: a Refresh on the same connection succeeds.
        #expect(try client.request(.refresh, []).type.messageClass == .successResponse)

        // LOCAL (v2, with a skipped block) and UNKNOWN (v1): the proxy's own connection.
        let local = try ProxiedClient(to: tcp, header: ProxyHeaders.v2Local(skipping: 5))
        defer { local.close() }
        #expect(local.binding() == local.socket.localAddress)
        #expect(local.socket.localAddress.ip == trustedProxyIP)
        let unknown = try ProxiedClient(to: tcp, header: Array("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n".utf8))
        defer { unknown.close() }
        #expect(unknown.binding() == unknown.socket.localAddress)

        let admin = try AdminServer(settings: AdminConfig(port: 0), backend: ServerAdminBackend(server), logger: quietAdminLogger)
        try await admin.application().test(.router) { http in
            let list = try await adminRequest(http, "/allocations")
            let items = try #require(list.object["allocations"] as? [[String: Any]])
            #expect(items.compactMap { $0["client"] as? String } == ["\(Self.clientV4)"])
            #expect(try await adminRequest(http, "/allocations?client=198.51.100.7").object["count"] as? Int == 1)
            #expect(try await adminRequest(http, "/allocations?client=127.0.0.3").object["count"] as? Int == 0)
            let stats = try await adminRequest(http, "/stats")
            #expect(jsonInt(stats.json, "proxyProtocol", "accepted") == 3)
            #expect(jsonInt(stats.json, "proxyProtocol", "untrusted") == 0)
            let samples = prometheusSamples(try await adminRequest(http, "/metrics").text)
            #expect(samples["tern_proxy_protocol_accepted_total"] == 3)
            #expect(samples[#"tern_proxy_protocol_rejected_total{reason="malformed"}"#] == 0)
        }
        #expect(try client.request(.refresh, [.lifetime(0)]).type.messageClass == .successResponse)
        for c in [client, local, unknown] { c.close() }
        try expectBaseline(server, baseline)
    }

    @Test("Per-IP limits count the header's address: connectionsPerIP 1 admits two sources behind one proxy and refuses a second connection of one; allocationsPerIP likewise")
    func perIPLimits() throws {
        var limits = LimitsConfig()
        limits.connectionsPerIP = 1
        let server = try startProxyServer(limits: limits)
        defer { server.stop() }
        let baseline = server.openDescriptors().count
        let tcp = try server.listener(.tcp)
        func source(_ last: UInt8, _ port: UInt16) -> TransportAddress { TransportAddress("198.51.100.\(last):\(port)")! }
        let a = try ProxiedClient(to: tcp, header: ProxyHeaders.v2(source(7, 43001), tcp))
        defer { a.close() }
        let b = try ProxiedClient(to: tcp, header: ProxyHeaders.v1(source(8, 43002), tcp))
        defer { b.close() }
        #expect(a.binding() == source(7, 43001))
        #expect(b.binding() == source(8, 43002))
        // What the leak check at the end looks at sees these two.
        #expect(server.openDescriptors().count == baseline + 2 && serverSocketsHeld(tcp) == 2)
        let c = try ProxiedClient(to: tcp, header: ProxyHeaders.v2(source(7, 43003), tcp) + bindingRequest())
        defer { c.close() }
        #expect(c.socket.closedWithoutAnswer())
        #expect(server.stats().io.tcpRefusedPerIP == 1)
        #expect(server.snapshot(perUser: false).limited["connections_per_ip"] == 1)
        // The slot is given back under the header's address too.
        a.close()
        #expect(eventually { server.stats().connections == 1 })
        let d = try ProxiedClient(to: tcp, header: ProxyHeaders.v2(source(7, 43004), tcp))
        defer { d.close() }
        #expect(d.binding() == source(7, 43004))
        for x in [b, c, d] { x.close() }
        try expectBaseline(server, baseline)

        let quota = try startProxyServer(settings: { $0.limits.allocationsPerIP = 1 })
        defer { quota.stop() }
        let quotaTCP = try quota.listener(.tcp)
        let first = try ProxiedClient(to: quotaTCP, header: ProxyHeaders.v2(source(7, 43011), quotaTCP))
        let second = try ProxiedClient(to: quotaTCP, header: ProxyHeaders.v2(source(7, 43012), quotaTCP))
        let other = try ProxiedClient(to: quotaTCP, header: ProxyHeaders.v2(source(9, 43013), quotaTCP))
        defer { for x in [first, second, other] { x.close() } }
        #expect(try first.allocate().type.messageClass == .successResponse)
        #expect(try second.allocate().errorCode?.code == 486)
        #expect(try other.allocate().type.messageClass == .successResponse)
        #expect(Set(quota.allocationInfos(user: nil, client: nil).map(\.client)) == ["198.51.100.7:43011", "198.51.100.9:43013"])
    }
}
