import STUN
import Testing
@testable import TernCore

/// RFC 6062 through the handler, over the in-memory relays: TCP allocations, Connect and its
/// outcome, ConnectionBind. The sockets themselves are tested in TernIOTests (TCPRelayTests).
@Suite("RFC 6062 TCP allocations over the in-memory relays")
struct TCPRelayCoreTests {
    /// A TCP allocation on a TCP client connection.
    func tcpAllocated(_ h: TurnHarness) throws -> TestClient {
        let c = h.client(transport: .tcp)
        #expect(c.allocate([.requestedTransport(protocolNumber: 6)]).isSuccess)
        return c
    }

    /// Hands `bytes` to the handler as a new client connection; the raw result.
    func handle(_ h: TurnHarness, _ c: TestClient, _ bytes: [UInt8]) -> (HandlerResult, [UInt8]) {
        var out = [UInt8](repeating: 0, count: 1500)
        let result = bytes.withUnsafeBytes { p in
            out.withUnsafeMutableBytes { h.handler.handle(p, context: c.context, response: $0) }
        }
        return (result, out)
    }

    @Test("Section 5.1: REQUESTED-TRANSPORT TCP needs a stream connection, and refuses EVEN-PORT and DONT-FRAGMENT")
    func allocateTCP() throws {
        let h = TurnHarness()
        #expect(h.client().allocate([.requestedTransport(protocolNumber: 6)]).code == 400)
        let other = h.client("198.51.100.1:40001", transport: .tcp)
        #expect(other.allocate([.requestedTransport(protocolNumber: 6), .evenPort(reserve: false)]).code == 400)
        #expect(other.allocate([.requestedTransport(protocolNumber: 6), .dontFragment]).code == 400)
        _ = try tcpAllocated(h)
        #expect(h.handler.allocations.all.contains { $0.tcpRelay })
    }

    @Test("Section 5.2: Connect waits for the connection, then answers with CONNECTION-ID; a second Connect to that peer is 446")
    func connectSucceeds() throws {
        let h = TurnHarness()
        let c = try tcpAllocated(h)
        #expect(c.request(.connect, [.xorPeerAddress(Peers.a)]) == nil)  // the answer waits for the outcome
        let attempt = try #require(h.relays.connects.first)
        #expect(attempt.peer == Peers.a)
        // The peer may answer at once: connecting installs the permission.
        #expect(try #require(h.handler.allocations.all.first).hasPermission(Peers.a.ip, now: h.handler.now))
        var out = [UInt8](repeating: 0, count: 1500)
        let finished = try #require(out.withUnsafeMutableBytes {
            h.handler.peerConnectFinished(connectionID: attempt.connectionID, relay: attempt.relay, success: true, response: $0)
        })
        #expect(finished.route.client == c.context.client)
        let response = try Message.decode(Array(out[0..<finished.length]))
        #expect(response.isSuccess && response.type.method == .connect)
        guard case .connectionID(let id)? = response.first(.connectionID) else { Issue.record("no CONNECTION-ID"); return }
        #expect(id == attempt.connectionID)
        #expect(c.request(.connect, [.xorPeerAddress(Peers.a)]).code == 446)
    }

    @Test("Section 5.2: a failed connection answers 447 and frees the peer; the policy refuses with 403, a UDP allocation with 400")
    func connectFails() throws {
        let h = TurnHarness()
        let c = try tcpAllocated(h)
        #expect(c.request(.connect, [.xorPeerAddress(Peers.denied)]).code == 403)
        #expect(c.request(.connect, [.xorPeerAddress(Peers.b)]) == nil)
        let attempt = try #require(h.relays.connects.last)
        var out = [UInt8](repeating: 0, count: 1500)
        let finished = try #require(out.withUnsafeMutableBytes {
            h.handler.peerConnectFinished(connectionID: attempt.connectionID, relay: attempt.relay, success: false, response: $0)
        })
        #expect(try Message.decode(Array(out[0..<finished.length])).code == 447)
        #expect(h.handler.turnCounters.errors[447] == 1)
        // The peer may be tried again.
        #expect(c.request(.connect, [.xorPeerAddress(Peers.b)]) == nil)
        let udp = h.client("198.51.100.1:40002")
        #expect(udp.allocate().isSuccess)
        #expect(udp.request(.connect, [.xorPeerAddress(Peers.a)]).code == 400)
    }

    @Test("Section 5.4: ConnectionBind joins a new connection of the same user to the peer connection, once; others get 441 or 400")
    func connectionBind() throws {
        let h = TurnHarness()
        let c = try tcpAllocated(h)
        #expect(c.request(.connect, [.xorPeerAddress(Peers.a)]) == nil)
        let attempt = try #require(h.relays.connects.first)
        var out = [UInt8](repeating: 0, count: 1500)
        _ = out.withUnsafeMutableBytes {
            h.handler.peerConnectFinished(connectionID: attempt.connectionID, relay: attempt.relay, success: true, response: $0)
        }
        // Another user's connection may not claim it.
        let bob = h.client("198.51.100.1:40003", username: "bob", transport: .tcp)
        #expect(bob.request(.connectionBind, [.connectionID(attempt.connectionID)]).code == 441)
        // Over UDP there is nothing to join.
        let udp = h.client("198.51.100.1:40004")
        #expect(udp.request(.connectionBind, [.connectionID(attempt.connectionID)]).code == 400)
        // The client's new data connection: authenticated (401 first), then joined.
        let data = h.client("198.51.100.1:40005", transport: .tcp)
        #expect(data.request(.connectionBind, [.connectionID(0xDEAD_BEEF)]).code == 400)  // unknown id
        let (result, _) = handle(h, data, data.encode(.connectionBind, [.connectionID(attempt.connectionID)]))
        guard case .bindDataConnection(_, let id, let owner) = result else { Issue.record("not joined: \(result)"); return }
        #expect(id == attempt.connectionID)
        #expect(owner == h.handler.workerIndex)
        // Claimed once only.
        let again = h.client("198.51.100.1:40006", transport: .tcp)
        #expect(again.request(.connectionBind, [.connectionID(attempt.connectionID)]).code == 400)
    }
}
