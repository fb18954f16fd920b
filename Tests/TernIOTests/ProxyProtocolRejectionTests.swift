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

/// `listeners[].proxyProtocol`: what is closed, and counted, before a connection gets anywhere: an
/// untrusted source at accept, a malformed header, no header within `tls.handshakeTimeout`.
@Suite("PROXY protocol listeners: untrusted, malformed and missing headers", .serialized)
struct ProxyProtocolRejectionTests {
    static let client = TransportAddress("198.51.100.7:40000")!

    @Test("A source outside trusted is closed at accept without an answer, even with a valid header; counted untrusted in /stats and Prometheus")
    func untrusted() async throws {
        let server = try startProxyServer()
        defer { server.stop() }
        let baseline = server.openDescriptors().count
        let tcp = try server.listener(.tcp), tls = try server.listener(.tls)
        let attempts: [(TransportAddress, [UInt8])] = [
            (tcp, bindingRequest()),
            (tcp, ProxyHeaders.v1(Self.client, tcp) + bindingRequest()),
            (tls, ProxyHeaders.v2(Self.client, tls) + TLSTestClient.firstFlight()),
        ]
        for (i, (address, bytes)) in attempts.enumerated() {
            let s = try TestSocket.connect(.tcp, to: address, from: untrustedProxyIP)
            defer { s.close() }
            s.send(bytes)
            #expect(s.closedWithoutAnswer(), "attempt \(i)")
        }
        #expect(server.proxyCounts == ["accepted": 0, "untrusted": 3, "malformed": 0, "missing": 0])
        #expect(server.stats().io.tcpAccepted == 0)
        // The trusted proxy is still served.
        let trusted = try ProxiedClient(to: tcp, header: ProxyHeaders.v1(Self.client, tcp))
        defer { trusted.close() }
        #expect(trusted.binding() == Self.client)

        let admin = try AdminServer(settings: AdminConfig(port: 0), backend: ServerAdminBackend(server), logger: quietAdminLogger)
        try await admin.application().test(.router) { http in
            let stats = try await adminRequest(http, "/stats")
            #expect(jsonInt(stats.json, "proxyProtocol", "untrusted") == 3)
            #expect(jsonInt(stats.json, "proxyProtocol", "accepted") == 1)
            let samples = prometheusSamples(try await adminRequest(http, "/metrics").text)
            #expect(samples[#"tern_proxy_protocol_rejected_total{reason="untrusted"}"#] == 3)
            #expect(samples[#"tern_proxy_protocol_rejected_total{reason="missing"}"#] == 0)
            #expect(samples["tern_proxy_protocol_accepted_total"] == 1)
        }
        trusted.close()
        try expectBaseline(server, baseline)
    }

    @Test("A malformed header (a bare STUN request, a ClientHello, HTTP, bad v2 version, command or family, DGRAM, short length, v1 with a leading zero or no CRLF in 107 bytes) is closed without an answer and counted")
    func malformed() async throws {
        let server = try startProxyServer()
        defer { server.stop() }
        let baseline = server.openDescriptors().count
        let tcp = try server.listener(.tcp), tls = try server.listener(.tls)
        let good = ProxyHeaders.v2(Self.client, tcp)
        func patched(_ index: Int, _ value: UInt8) -> [UInt8] { var h = good; h[index] = value; return h }
        let cases: [(String, TransportAddress, [UInt8])] = [
            ("bare STUN request", tcp, bindingRequest()),
            ("ClientHello on tcp", tcp, TLSTestClient.firstFlight()),
            ("ClientHello on tls", tls, TLSTestClient.firstFlight()),
            ("HTTP", tcp, Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)),
            ("v2 version 3", tcp, patched(12, 0x31)),
            ("v2 command 2", tcp, patched(12, 0x22)),
            ("v2 family 4", tls, patched(13, 0x41)),
            ("v2 DGRAM", tcp, patched(13, 0x12)),
            ("v2 length below the INET block", tcp, patched(15, 4) + bindingRequest()),
            ("v2 broken signature", tcp, patched(11, 0x0B)),
            ("v2 TLV past the end", tcp, ProxyHeaders.v2(Self.client, tcp, tlvs: [0x01, 0x00, 0x09, 0x68])),
            ("v1 leading zero", tcp, Array("PROXY TCP4 198.051.100.7 127.0.0.1 40000 3478\r\n".utf8)),
            ("v1 TCP5", tcp, Array("PROXY TCP5 198.51.100.7 127.0.0.1 40000 3478\r\n".utf8)),
            ("v1 no CRLF in 107 bytes", tcp, Array(("PROXY UNKNOWN " + String(repeating: "a", count: 120)).utf8)),
            ("v1 lone LF", tls, Array("PROXY TCP4 198.51.100.7 127.0.0.1 40000 3478\n".utf8)),
        ]
        for (name, address, bytes) in cases {
            let s = try TestSocket.connect(.tcp, to: address, from: trustedProxyIP)
            defer { s.close() }
            s.send(bytes)
            #expect(s.closedWithoutAnswer(), "\(name)")
        }
        #expect(server.proxyCounts == ["accepted": 0, "untrusted": 0, "malformed": UInt64(cases.count), "missing": 0])
        #expect(server.stats().io.tcpAccepted == 0)
        let admin = try AdminServer(settings: AdminConfig(port: 0), backend: ServerAdminBackend(server), logger: quietAdminLogger)
        try await admin.application().test(.router) { http in
            let samples = prometheusSamples(try await adminRequest(http, "/metrics").text)
            #expect(samples[#"tern_proxy_protocol_rejected_total{reason="malformed"}"#] == Double(cases.count))
        }
        try expectBaseline(server, baseline)
    }

    @Test("No complete header within tls.handshakeTimeout (silent, or a partial header) is closed and counted missing; so is a connection closed before its header")
    func missing() async throws {
        let clock = testClock()
        let server = try startProxyServer(clock: clock)
        defer { server.stop() }
        let baseline = server.openDescriptors().count
        let tcp = try server.listener(.tcp), tls = try server.listener(.tls)
        let partialV1 = Array(ProxyHeaders.v1(Self.client, tcp).prefix(20))
        let partialV2 = Array(ProxyHeaders.v2(Self.client, tls).prefix(14))
        var stalled: [TestSocket] = []
        defer { for s in stalled { s.close() } }
        for (address, bytes) in [(tcp, []), (tcp, partialV1), (tls, []), (tls, partialV2)] {
            let s = try TestSocket.connect(.tcp, to: address, from: trustedProxyIP)
            stalled.append(s)
            s.send(bytes)
        }
        // The accepts happen on the worker queues: wait (bounded) until all four are being read.
        try #require(eventually { server.pendingProxyHeaders == 4 })
        // Connections whose header is being read are among the workers' descriptors.
        #expect(server.openDescriptors().count == baseline + 4)
        #expect(serverSocketsHeld(tcp) == 2 && serverSocketsHeld(tls) == 2)
        clock.advance(by: 9); server.tick()
        #expect(server.pendingProxyHeaders == 4)
        #expect(server.proxyCounts["missing"] == 0)
        clock.advance(by: 2); server.tick()
        for (i, s) in stalled.enumerated() { #expect(s.closedWithoutAnswer(), "stalled \(i)") }
        #expect(server.proxyCounts == ["accepted": 0, "untrusted": 0, "malformed": 0, "missing": 4])

        // Closed by the client part-way through its header: missing, at once.
        let quitter = try TestSocket.connect(.tcp, to: tcp, from: trustedProxyIP)
        quitter.send(partialV1)
        #expect(eventually { server.pendingProxyHeaders == 1 })
        quitter.close()
        #expect(eventually { server.proxyCounts["missing"] == 5 && server.pendingProxyHeaders == 0 })

        // After all that the counts of connections without an allocation were given back: with
        // connectionsWithoutAllocation counting, a fresh proxied client is still served.
        let fresh = try ProxiedClient(to: tls, header: ProxyHeaders.v1(Self.client, tls), tlsTrust: TLSFixture.shared.cert)
        defer { fresh.close() }
        #expect(fresh.binding() == Self.client)
        let admin = try AdminServer(settings: AdminConfig(port: 0), backend: ServerAdminBackend(server), logger: quietAdminLogger)
        try await admin.application().test(.router) { http in
            let samples = prometheusSamples(try await adminRequest(http, "/metrics").text)
            #expect(samples[#"tern_proxy_protocol_rejected_total{reason="missing"}"#] == 5)
            #expect(jsonInt(try await adminRequest(http, "/stats").json, "proxyProtocol", "missing") == 5)
        }
        fresh.close()
        try expectBaseline(server, baseline)
    }

    @Test("Headers that never complete do not pin connectionsWithoutAllocation: once closed, their slots are free again")
    func unallocatedSlotsReturn() throws {
        var limits = LimitsConfig()
        limits.connectionsWithoutAllocation = 2
        let clock = testClock()
        let server = try startProxyServer(limits: limits, clock: clock)
        defer { server.stop() }
        let baseline = server.openDescriptors().count
        let tcp = try server.listener(.tcp)
        for round in 0..<3 {
            // Two pending headers take both slots; a third connection is closed at accept.
            let held = try (0..<2).map { _ in try TestSocket.connect(.tcp, to: tcp, from: trustedProxyIP) }
            defer { for s in held { s.close() } }
            try #require(eventually { server.pendingProxyHeaders == 2 }, "round \(round)")
            let third = try TestSocket.connect(.tcp, to: tcp, from: trustedProxyIP)
            defer { third.close() }
            third.send(ProxyHeaders.v1(Self.client, tcp) + bindingRequest())
            #expect(third.closedWithoutAnswer(), "round \(round)")
            // Malformed, timed out: both slots come back.
            held[0].send(bindingRequest())
            #expect(held[0].closedWithoutAnswer())
            clock.advance(by: 11); server.tick()
            #expect(held[1].closedWithoutAnswer())
            #expect(eventually { server.pendingProxyHeaders == 0 })
        }
        let ok = try ProxiedClient(to: tcp, header: ProxyHeaders.v2(Self.client, tcp))
        defer { ok.close() }
        #expect(ok.binding() == Self.client)
        #expect(server.snapshot(perUser: false).limited["connections_without_allocation"] == 3)
        ok.close()
        try expectBaseline(server, baseline)
    }
}

extension TLSTestClient {
    /// A TLS client's first flight (the ClientHello record), as bytes.
    static func firstFlight() -> [UInt8] {
        let c = TLSTestClient(alpn: ["stun.turn"])
        c.handshake()
        return c.output()
    }
}
