import Foundation
import STUN
import TernCore
import Testing
@testable import TernIO

@Suite("Reload and drain on a running server")
struct ReloadDrainTests {
    @Test("Reload adds a user and a new secret and swaps the peer policy while an allocation keeps relaying without loss")
    func reloadCredentialsWhileRelaying() throws {
        try withTurnServer { server, address in
            let session = try ChannelSession(server: address)
            let (alice, peer) = (session.client, session.peer)
            defer { peer.close() }
            #expect(relayThroughChannel(alice, peer: peer, count: 20) == 20)

            let expiry = UInt64(Date().timeIntervalSince1970) + 3600
            let restName = "\(expiry):dave"
            let carolBefore = try TurnTestClient(server: address, username: "carol", password: "c4rol")
            #expect(try carolBefore.allocate().errorCode?.code == 401)
            let daveBefore = try TurnTestClient(server: address, username: restName,
                                                password: CredentialStore.restPassword(secret: "rotated", username: restName))
            #expect(try daveBefore.allocate().errorCode?.code == 401)

            // The reload: one more user and secret; the old secret goes; the policy now denies 127.0.0.2.
            let old = try #require(server.workers[0].handler.turn)
            server.updateTurn(testTurnContext(users: testUsers.merging(["carol": "c4rol"]) { $1 }, secrets: ["rotated"],
                                              deny: ["127.0.0.2/32"], shared: old.shared, nonces: old.nonces))

            // The live allocation goes on relaying, its nonce still valid (same key), its Refresh accepted.
            #expect(relayThroughChannel(alice, peer: peer, count: 20) == 20)
            #expect(try alice.request(.refresh, [.lifetime(600)]).type.messageClass == .successResponse)
            let carol = try TurnTestClient(server: address, username: "carol", password: "c4rol")
            #expect(try carol.allocate().type.messageClass == .successResponse)
            let dave = try TurnTestClient(server: address, username: restName,
                                          password: CredentialStore.restPassword(secret: "rotated", username: restName))
            #expect(try dave.allocate().type.messageClass == .successResponse)
            let oldSecret = try TurnTestClient(server: address, username: "\(expiry):erin",
                                               password: CredentialStore.restPassword(secret: "s3cret", username: "\(expiry):erin"))
            #expect(try oldSecret.allocate().errorCode?.code == 401)
            #expect(try carol.request(.createPermission, [.xorPeerAddress(TransportAddress("127.0.0.2:9")!)]).errorCode?.code == 403)
            #expect(try carol.request(.createPermission, [.xorPeerAddress(TransportAddress("127.0.0.3:9")!)]).type.messageClass == .successResponse)
            // Quotas are kept across the reload: alice still counts as one allocation.
            #expect(old.shared.allocations(of: "alice") == 1)
        }
    }

    @Test("Reload binds a new listener and closes a removed one; a port that cannot be bound changes nothing")
    func reloadListeners() throws {
        try withTurnServer { server, address in
            let session = try ChannelSession(server: address)
            let (alice, peer) = (session.client, session.peer)
            defer { peer.close() }
            let before = server.bound
            // Keep every listener as configured, add a UDP one on 127.0.0.2 (port 0: the kernel picks).
            let current = server.configuredListeners
            #expect(current.count == before.count)
            let extra = ListenerConfig(transport: .udp, address: TransportAddress(ip: IPAddress("127.0.0.2")!, port: 0))
            var change = try server.reconcileListeners(current + [extra])
            #expect(change.added.count == 1)
            let added = try #require(change.added.first?.address)
            #expect(added.port != 0 && added != address)
            let probe = try TurnTestClient(server: added, username: "alice", password: "wonderland")
            #expect(try probe.request(.binding, authenticated: false).type.messageClass == .successResponse)
            #expect(relayThroughChannel(alice, peer: peer, count: 10) == 10)

            // A listener on a port someone else holds: the reload fails and nothing changes.
            let blocker = try TestPeer()
            defer { blocker.close() }
            #expect(throws: (any Error).self) {
                try server.reconcileListeners(current + [extra, ListenerConfig(transport: .udp, address: blocker.address)])
            }
            #expect(Set(server.bound.map(\.address)).contains(added))

            // Remove the added listener: it stops answering; the others, and the allocation, go on.
            change = try server.reconcileListeners(current)
            #expect(change.removed.map(\.address) == [added])
            #expect(throws: (any Error).self) { _ = try probe.request(.binding, authenticated: false) }
            #expect(relayThroughChannel(alice, peer: peer, count: 10) == 10)
            #expect(try alice.request(.refresh, [.lifetime(600)]).type.messageClass == .successResponse)
        }
    }

    @Test("Draining: Allocate gets 508, or 300 with ALTERNATE-SERVER; the live allocation keeps relaying")
    func drain() throws {
        try withTurnServer { server, address in
            let session = try ChannelSession(server: address)
            let (alice, peer) = (session.client, session.peer)
            defer { peer.close() }
            #expect(server.isReady)
            server.startDraining(DrainConfig())
            #expect(!server.isReady)
            let bob = try TurnTestClient(server: address, username: "bob", password: "builder")
            let refused = try bob.allocate()
            #expect(refused.errorCode?.code == 508)
            #expect(relayThroughChannel(alice, peer: peer, count: 20) == 20)
            #expect(try alice.request(.refresh, [.lifetime(600)]).type.messageClass == .successResponse)
            #expect(try alice.request(.createPermission, [.xorPeerAddress(TransportAddress("127.0.0.5:9")!)]).type.messageClass == .successResponse)

            let alternate = TransportAddress("192.0.2.20:3478")!
            server.startDraining(DrainConfig(alternateServer: alternate))
            let carol = try TurnTestClient(server: address, username: "bob", password: "builder")
            let redirected = try carol.allocate()
            #expect(redirected.errorCode?.code == 300)
            #expect(redirected.first(.alternateServer) == .alternateServer(alternate))
            #expect(server.snapshot(perUser: false).allocations.active == 1)
            #expect(server.snapshot(perUser: false).draining)
        }
    }
}
