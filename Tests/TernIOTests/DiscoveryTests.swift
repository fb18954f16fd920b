import Dispatch
import Foundation
import Logging
import STUN
import TernAdmin
import TernCore
import Testing
@testable import TernIO

/// `relay.discoverExternal` against real STUN servers on loopback: Tern's own, one that never
/// answers, and one that plays a NAT changing the port.
@Suite("Public relay address discovery (relay.discoverExternal)")
struct DiscoveryTests {
    /// Relay-range ports of these tests, away from the other suites' 62000-62999.
    static let range: ClosedRange<UInt16> = 63100...63499

    @Test("The mapped address is the host's own: no NAT (direct), and the port is the relay-range port it was sent from")
    func direct() throws {
        try withTurnServer { _, address in
            let outcome = ExternalAddressDiscovery.discover(
                family: .ipv4, bindIP: .loopbackV4, portRange: Self.range,
                servers: [StunServerName(host: "127.0.0.1", port: address.port)], hostAddresses: [.loopbackV4])
            guard case .direct(let local, let mapped, let server) = outcome else {
                Issue.record("expected direct, got \(outcome)"); return
            }
            #expect(Self.range.contains(local.port))
            #expect(mapped == local)
            #expect(server == "127.0.0.1:\(address.port)")
            #expect(outcome.succeeded)
            #expect(outcome.status(family: .ipv4).state == .direct)
            #expect(outcome.status(family: .ipv4).advertised == nil)
        }
    }

    @Test("A mapped address that is not the host's, same port: a 1:1 NAT, and its address is what is advertised")
    func oneToOne() throws {
        try withTurnServer { _, address in
            // From the wildcard, with no host address known: the mapped 127.0.0.1 stands for a NAT's.
            let outcome = ExternalAddressDiscovery.discover(
                family: .ipv4, bindIP: .anyV4, portRange: Self.range,
                servers: [StunServerName(host: "127.0.0.1", port: address.port)], hostAddresses: [])
            guard case .oneToOne(let local, let mapped, _) = outcome else {
                Issue.record("expected oneToOne, got \(outcome)"); return
            }
            #expect(mapped.port == local.port)
            let status = outcome.status(family: .ipv4)
            #expect(status.state == .discovered && status.advertised == "127.0.0.1" && status.state.isSettled)
        }
    }

    @Test("A NAT that changes the port is not 1:1: nothing is advertised and the reason is given")
    func portChanged() throws {
        let fake = try FakeStunServer(portShift: 7)
        defer { fake.stop() }
        let outcome = ExternalAddressDiscovery.discover(
            family: .ipv4, bindIP: .loopbackV4, portRange: Self.range,
            servers: [StunServerName(host: "127.0.0.1", port: fake.port)], hostAddresses: [])
        guard case .notOneToOne(let local, let mapped, _) = outcome else {
            Issue.record("expected notOneToOne, got \(outcome)"); return
        }
        #expect(mapped.port == local.port &+ 7)
        let status = outcome.status(family: .ipv4)
        #expect(status.state == .notOneToOne && status.advertised == nil && !status.state.isSettled)
        #expect(status.error?.contains("not 1:1") == true)
        #expect(!outcome.succeeded)
    }

    @Test("Servers are tried in order: one that does not resolve and one that never answers are passed over for the next")
    func fallsThrough() throws {
        let silent = try ClientSocket(unconnectedUDP: .ipv4, local: TransportAddress(ip: .loopbackV4, port: 0))
        let silentPort = try #require(silent.localAddress?.port)
        try withTurnServer { _, address in
            let servers = [StunServerName(host: "stun.invalid", port: 3478),
                           StunServerName(host: "127.0.0.1", port: silentPort),
                           StunServerName(host: "127.0.0.1", port: address.port)]
            let outcome = ExternalAddressDiscovery.discover(
                family: .ipv4, bindIP: .loopbackV4, portRange: Self.range, servers: servers, hostAddresses: [.loopbackV4],
                resolve: { $0 == "stun.invalid" ? [] : Posix.resolve($0) })
            guard case .direct(_, _, let server) = outcome else { Issue.record("expected direct, got \(outcome)"); return }
            #expect(server == "127.0.0.1:\(address.port)")
            // Only the silent one: failed, naming it.
            let alone = ExternalAddressDiscovery.discover(
                family: .ipv4, bindIP: .loopbackV4, portRange: Self.range,
                servers: [StunServerName(host: "127.0.0.1", port: silentPort)], hostAddresses: [])
            #expect(alone == .failed(server: "127.0.0.1:\(silentPort)", reason: "no answer from 127.0.0.1:\(silentPort)"))
            // IPv6 asked of a server that only has IPv4.
            let v6 = ExternalAddressDiscovery.discover(
                family: .ipv6, bindIP: .anyV6, portRange: Self.range,
                servers: [StunServerName(host: "127.0.0.1", port: address.port)], hostAddresses: [])
            guard case .failed(_, let reason) = v6 else { Issue.record("expected failed, got \(v6)"); return }
            #expect(reason.contains("IPv6"))
        }
    }
}

@Suite("Readiness: /readyz turns 503 at capacity and while the relay address is undiscovered; health checks need no token")
struct ReadinessTests {
    @Test("At limits.allocationsTotal the server is not ready (/readyz 503, atCapacity in /stats); below it, ready again")
    func capacity() async throws {
        var limits = LimitsConfig()
        limits.allocationsTotal = 1
        let (server, address) = try startTurnServer(limits: limits, settings: { $0.limits = limits })
        defer { server.stop() }
        let token = "0123456789abcdef-token"
        let admin = try AdminServer(settings: AdminConfig(port: 0, token: token), backend: ServerAdminBackend(server),
                                    logger: quietAdminLogger)
        try await admin.application().test(.router) { http in
            #expect(try await adminRequest(http, "/readyz").status == 200)
            let client = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            #expect(try client.allocate().type.messageClass == .successResponse)
            #expect(!server.isReady)
            let r = try await adminRequest(http, "/readyz")
            #expect(r.status == 503)
            #expect(r.text == #"{"status":"not ready"}"#, "nothing beyond the status")
            #expect(try await adminRequest(http, "/healthz").status == 200, "alive, only full")
            let stats = try await adminRequest(http, "/stats", token: token)
            #expect(stats.object["atCapacity"] as? Bool == true)
            #expect(stats.object["ready"] as? Bool == false)
            // Ending the allocation frees the place.
            #expect(try client.request(.refresh, [.lifetime(0)]).type.messageClass == .successResponse)
            #expect(server.isReady)
            #expect(try await adminRequest(http, "/readyz").status == 200)
        }
        // A raised limit (reload) makes room as well.
        let (other, otherAddress) = try startTurnServer(limits: limits, settings: { $0.limits = limits })
        defer { other.stop() }
        let client = try TurnTestClient(server: otherAddress, username: "bob", password: "builder")
        #expect(try client.allocate().type.messageClass == .successResponse)
        #expect(!other.isReady)
        limits.allocationsTotal = 2
        other.updateLimits(limits)
        #expect(other.isReady)
    }

    @Test("A relay address still pending, failing or behind a NAT that is not 1:1 keeps the server unready; configured, discovered or direct ones do not")
    func discoveryStates() throws {
        try withTurnServer { server, _ in
            #expect(server.isReady)
            for state in [ExternalAddressStatus.State.pending, .failed, .notOneToOne] {
                server.externalAddresses = [ExternalAddressStatus(family: "ipv4", state: state, source: "stun.example:3478")]
                #expect(!server.isReady, "\(state)")
                #expect(server.snapshot(perUser: false).externalAddresses.first?.state == state)
            }
            for state in [ExternalAddressStatus.State.configured, .discovered, .direct] {
                server.externalAddresses = [ExternalAddressStatus(family: "ipv4", state: state, advertised: "203.0.113.5", source: "x")]
                #expect(server.isReady, "\(state)")
            }
            // A discovered address is one of the server's own relay addresses for the peer policy.
            server.externalAddresses = [ExternalAddressStatus(family: "ipv4", state: .discovered, advertised: "203.0.113.5", source: "x")]
            #expect(server.ownEndpoints(admin: nil).relayIPs.contains(IPAddress("203.0.113.5")!))
        }
    }

    @Test("/healthz and /readyz answer without the token (and with a wrong one); every other route still wants it; a reload's new token replaces the old")
    func probesWithoutToken() async throws {
        let (server, _) = try startTurnServer()
        defer { server.stop() }
        let admin = try AdminServer(settings: AdminConfig(port: 0, token: "first-token-0123456789"), backend: ServerAdminBackend(server),
                                    logger: quietAdminLogger)
        try await admin.application().test(.router) { http in
            for path in ["/healthz", "/readyz"] {
                for token in [nil, "wrong"] as [String?] {
                    let r = try await adminRequest(http, path, token: token)
                    #expect(r.status == 200, "\(path)")
                    #expect(r.object.keys.sorted() == ["status"], "\(path): the status only")
                }
            }
            #expect(try await adminRequest(http, "/stats").status == 401)
            #expect(try await adminRequest(http, "/stats", token: "first-token-0123456789").status == 200)
            admin.updateToken("second-token-0123456789")
            #expect(try await adminRequest(http, "/stats", token: "first-token-0123456789").status == 401)
            #expect(try await adminRequest(http, "/stats", token: "second-token-0123456789").status == 200)
            #expect(try await adminRequest(http, "/readyz").status == 200)
        }
    }
}

/// A STUN server that answers every Binding with the sender's address and its port shifted by
/// `portShift`: what a NAT that does not keep ports looks like from inside.
final class FakeStunServer: @unchecked Sendable {
    let socket: ClientSocket
    let port: UInt16
    private let done = DispatchSemaphore(value: 0)
    private let stopped = ManagedAtomicFlag()

    init(portShift: UInt16) throws {
        socket = try ClientSocket(unconnectedUDP: .ipv4, local: TransportAddress(ip: .loopbackV4, port: 0))
        port = socket.localAddress?.port ?? 0
        let socket = self.socket, stopped = self.stopped, done = self.done
        DispatchQueue.global().async {
            // Bounded: at most 200 waits of 50 ms (10 s), or until stopped.
            for _ in 0..<200 where !stopped.isSet {
                guard let (from, bytes) = socket.receiveFrom(milliseconds: 50),
                      let request = try? Message.decode(bytes), request.type == .bindingRequest else { continue }
                let mapped = TransportAddress(ip: from.ip, port: from.port &+ portShift)
                let reply = Message(type: .bindingSuccess, transactionID: request.transactionID, attributes: [.xorMappedAddress(mapped)])
                socket.send(reply.encode(fingerprint: true), to: from)
            }
            done.signal()
        }
    }

    func stop() {
        stopped.set()
        done.wait()
    }
}

/// A flag set once, read from another thread.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
