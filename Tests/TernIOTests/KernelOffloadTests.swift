#if canImport(Glibc)
import Glibc
#endif
import CTernBPF
import Foundation
import STUN
import TernCore
import Testing
@testable import TernIO

/// The relay tests of `io.offload`, run with it off and on ("tc"): the same assertions hold
/// whichever path carries a packet. With "tc" they also check that the kernel carried it. Where BPF
/// cannot be loaded (no CAP_BPF/CAP_NET_ADMIN) the "tc" cases print why and stop; in CI, which runs
/// as root, they must run.
@Suite("Kernel fast path (io.offload)", .serialized)
struct KernelOffloadTests {
    static let modes: [IOConfig.Offload] = [.off, .tc]

    /// A server with `offload`, or nil (printed) when "tc" cannot be loaded here outside CI.
    static func server(_ offload: IOConfig.Offload, limits: LimitsConfig = LimitsConfig(),
                       clock: ManualClock = testClock(), interfaces: [String]? = nil) throws -> Server? {
        var io = IOConfig()
        io.offload = offload
        io.offloadInterfaces = interfaces
        let (server, _) = try startTurnServer(io: io, clock: clock) { $0.limits = limits }
        if offload == .tc, !server.snapshot(perUser: false).offload.active {
            let reason = server.snapshot(perUser: false).offload.unavailableReason ?? "?"
            server.stop()
            if ProcessInfo.processInfo.environment["CI"] == "true" {
                Issue.record("io.offload \"tc\" is unavailable in CI: \(reason)")
            } else {
                print("KernelOffloadTests: skipping the \"tc\" case: \(reason)")
            }
            return nil
        }
        return server
    }

    static func address(_ server: Server) -> TransportAddress { server.bound[0].address }

    @Test("ChannelData both ways over UDP/IPv4, with the counters right", arguments: modes)
    func channelsBothWays(_ offload: IOConfig.Offload) throws {
        guard let server = try Self.server(offload) else { return }
        defer { server.stop() }
        let s = try ChannelSession(server: Self.address(server))
        defer { s.peer.close() }
        // Sizes from 1 to 1,159 bytes, odd and even (the checksum update must hold for each).
        let toPeerSizes = (0..<20).map { 1 + ($0 * 61) % 1200 }, toClientSizes = (0..<20).map { 1 + ($0 * 47) % 1000 }
        for i in 0..<20 {
            let payload = [UInt8](repeating: UInt8(i), count: toPeerSizes[i])
            s.client.sendChannelData(0x4000, payload)
            let got = try #require(s.peer.receive())
            #expect(got.from == s.relayed)
            #expect(got.data == payload)
            let back = [UInt8](repeating: UInt8(255 - i), count: toClientSizes[i])
            s.peer.send(back, to: s.relayed)
            let relayed = try #require(s.client.receiveRelayed())
            #expect(relayed.channel == 0x4000)
            #expect(relayed.data == back)
        }
        let snap = server.snapshot(perUser: false)
        #expect(snap.relayed.clientToPeer.packets == 20)
        #expect(snap.relayed.peerToClient.packets == 20)
        #expect(snap.relayed.clientToPeer.bytes == UInt64(toPeerSizes.reduce(0, +)))
        #expect(snap.relayed.peerToClient.bytes == UInt64(toClientSizes.reduce(0, +)))
        let info = try #require(server.allocationInfos(user: nil, client: nil).first)
        #expect(info.relayedTraffic.clientToPeer.packets == 20)
        if offload == .tc {
            #expect(snap.offload.entries == 2)
            #expect(snap.offload.kernel["relayed_to_peer"] == 20)
            #expect(snap.offload.kernel["relayed_to_client"] == 20)
        }
        // A Send indication and a Data indication still go through user space.
        s.client.sendIndication(to: s.peer.address, [1, 2, 3])
        #expect(s.peer.receive()?.data == [1, 2, 3])
        #expect(server.snapshot(perUser: false).relayed.clientToPeer.packets == 21)
    }

    @Test("Relay to relay (both clients on this server), as browsers' calls go", arguments: modes)
    func relayToRelay(_ offload: IOConfig.Offload) throws {
        guard let server = try Self.server(offload) else { return }
        defer { server.stop() }
        let a = try TurnTestClient(server: Self.address(server), username: "alice", password: "wonderland")
        let b = try TurnTestClient(server: Self.address(server), username: "bob", password: "builder")
        let relayA = try #require(relayedAddresses(try a.allocate()).first)
        let relayB = try #require(relayedAddresses(try b.allocate()).first)
        #expect(try a.request(.channelBind, [.channelNumber(0x4000), .xorPeerAddress(relayB)]).type.messageClass == .successResponse)
        #expect(try b.request(.channelBind, [.channelNumber(0x4001), .xorPeerAddress(relayA)]).type.messageClass == .successResponse)
        for i in 0..<10 {
            a.sendChannelData(0x4000, [UInt8](repeating: UInt8(i), count: 50 + i))
            let atB = try #require(b.receiveRelayed())
            #expect(atB.channel == 0x4001 && atB.data == [UInt8](repeating: UInt8(i), count: 50 + i))
            b.sendChannelData(0x4001, [UInt8(i)])
            let atA = try #require(a.receiveRelayed())
            #expect(atA.channel == 0x4000 && atA.data == [UInt8(i)])
        }
        let snap = server.snapshot(perUser: false)
        // Each datagram is relayed twice (client to peer at one allocation, peer to client at the other).
        #expect(snap.relayed.clientToPeer.packets == 20 && snap.relayed.peerToClient.packets == 20)
        if offload == .tc {
            #expect(snap.offload.kernel["relayed_to_peer"] == 20 && snap.offload.kernel["relayed_to_client"] == 20)
        }
    }

    @Test("An expired permission stops the relaying in the kernel too", arguments: modes)
    func expiry(_ offload: IOConfig.Offload) throws {
        let clock = testClock()
        guard let server = try Self.server(offload, clock: clock) else { return }
        defer { server.stop() }
        let s = try ChannelSession(server: Self.address(server))
        defer { s.peer.close() }
        s.client.sendChannelData(0x4000, [1])
        #expect(s.peer.receive()?.data == [1])
        // RFC 8656 section 9: the permission lasts 300 s; the channel 600 s. Refreshing the
        // allocation does not refresh the permission.
        clock.advance(by: 200); server.tick()
        _ = try s.client.request(.refresh, [.lifetime(600)])
        clock.advance(by: 101); server.tick()
        #expect(server.snapshot(perUser: false).offload.entries == 0)
        s.client.sendChannelData(0x4000, [2])
        s.peer.send([3], to: s.relayed)
        #expect(eventually { server.stats().droppedNoPermission >= 2 })
        #expect(s.peer.receive() == nil)
        #expect(server.snapshot(perUser: false).relayed.clientToPeer.packets == 1)
    }

    @Test("A refreshed permission extends the kernel entry's expiry; a tick does not rewrite it", arguments: modes)
    func refreshExtends(_ offload: IOConfig.Offload) throws {
        let clock = testClock()
        guard let server = try Self.server(offload, clock: clock) else { return }
        defer { server.stop() }
        let s = try ChannelSession(server: Self.address(server))
        defer { s.peer.close() }
        var expiries: [UInt64] = []
        func kernelExpiry() -> UInt64? {
            guard let kernel = server.kernelOffload else { return nil }
            var key = tern_client_key(), value = tern_entry()
            guard tern_bpf_next_key(kernel.toPeer, nil, &key) == 0, Posix.bpfLookup(kernel.toPeer, key: &key, value: &value) else { return nil }
            return value.expiry_ns
        }
        if let e = kernelExpiry() { expiries.append(e) }
        clock.advance(by: 200); server.tick()
        // An unchanged entry is not rewritten by the tick.
        if let e = kernelExpiry() { #expect(e == expiries.last) }
        #expect(try s.client.request(.createPermission, [.xorPeerAddress(s.peer.address)]).type.messageClass == .successResponse)
        if let e = kernelExpiry() { expiries.append(e) }
        clock.advance(by: 101); server.tick()
        // Past the first permission's 300 s, the refreshed one (to 500 s) still relays.
        s.client.sendChannelData(0x4000, [1, 2, 3])
        #expect(s.peer.receive()?.data == [1, 2, 3])
        s.peer.send([4], to: s.relayed)
        #expect(s.client.receiveRelayed()?.data == [4])
        if offload == .tc {
            #expect(expiries.count == 2 && expiries[1] == expiries[0] + 200_000_000_000, "\(expiries)")
            let snap = server.snapshot(perUser: false)
            #expect(snap.offload.kernel["relayed_to_peer"] == 1 && snap.offload.kernel["relayed_to_client"] == 1)
        }
    }

    @Test("A stale kernel entry never relays: past its own expiry the program passes to user space")
    func staleEntry() throws {
        guard let server = try Self.server(.tc) else { return }
        defer { server.stop() }
        let s = try ChannelSession(server: Self.address(server))
        defer { s.peer.close() }
        let kernel = try #require(server.kernelOffload)
        // Turn every entry's expiry into the past, as if user space had missed the end.
        var key = tern_client_key(), next = tern_client_key()
        var keys: [tern_client_key] = []
        while (keys.isEmpty ? tern_bpf_next_key(kernel.toPeer, nil, &next) : tern_bpf_next_key(kernel.toPeer, &key, &next)) == 0 {
            keys.append(next)
            key = next
        }
        #expect(keys.count == 1)
        for var k in keys {
            var e = tern_entry()
            #expect(Posix.bpfLookup(kernel.toPeer, key: &k, value: &e))
            e.expiry_ns = 1
            try Posix.bpfUpdate(kernel.toPeer, key: &k, value: &e)
        }
        // User space still has the channel, so it relays; the kernel passed and counted it.
        s.client.sendChannelData(0x4000, [7, 7])
        #expect(s.peer.receive()?.data == [7, 7])
        let snap = server.snapshot(perUser: false)
        #expect(snap.offload.kernel["passed_expired"] == 1)
        #expect(snap.offload.kernel["relayed_to_peer"] == 0)
        #expect(snap.relayed.clientToPeer.packets == 1)
    }

    @Test("Deleting the allocation through the admin API removes its entries", arguments: modes)
    func deletion(_ offload: IOConfig.Offload) throws {
        guard let server = try Self.server(offload) else { return }
        defer { server.stop() }
        let s = try ChannelSession(server: Self.address(server))
        defer { s.peer.close() }
        s.client.sendChannelData(0x4000, [1, 2])
        #expect(s.peer.receive()?.data == [1, 2])
        let info = try #require(server.allocationInfos(user: nil, client: nil).first)
        #expect(server.deleteAllocation(id: info.id))
        #expect(server.snapshot(perUser: false).offload.entries == 0)
        s.client.sendChannelData(0x4000, [3])
        s.peer.send([4], to: s.relayed)
        #expect(eventually { server.stats().droppedNoAllocation >= 1 })
        #expect(s.peer.receive() == nil)
        // The deleted allocation's traffic, kernel-carried included, stays in the totals.
        #expect(server.snapshot(perUser: false).relayed.clientToPeer.packets == 1)
    }

    @Test("limits.bandwidthPerAllocation holds on both paths: over it, datagrams are dropped and counted", arguments: modes)
    func bandwidth(_ offload: IOConfig.Offload) throws {
        var limits = LimitsConfig()
        limits.bandwidthPerAllocation = 1000
        guard let server = try Self.server(offload, limits: limits) else { return }
        defer { server.stop() }
        let s = try ChannelSession(server: Self.address(server))
        defer { s.peer.close() }
        for _ in 0..<40 { s.client.sendChannelData(0x4000, [UInt8](repeating: 1, count: 100)) }
        var received = 0
        while s.peer.receive() != nil { received += 1 }
        // 1,000 B per second: 10 datagrams, or up to 20 when a second turns during the burst.
        #expect((10...20).contains(received), "\(received)")
        #expect(eventually {
            let snap = server.snapshot(perUser: false)
            return snap.relayed.clientToPeer.packets == UInt64(received) && snap.limited["bandwidth"] == UInt64(40 - received)
        })
    }

    @Test("IPv6 channels stay in user space, relayed and counted as before", arguments: modes)
    func ipv6(_ offload: IOConfig.Offload) throws {
        guard let server = try Self.server(offload) else { return }
        defer { server.stop() }
        let v6 = try #require(server.bound.first { $0.transport == .udp && $0.address.ip.family == .ipv6 }).address
        let client = try TurnTestClient(server: v6, username: "alice", password: "wonderland")
        let allocated = try client.allocate([.requestedAddressFamily(.ipv6)])
        let relay = try #require(relayedAddresses(allocated).first)
        let peer = try TestPeer(ip: .loopbackV6)
        defer { peer.close() }
        _ = try client.request(.channelBind, [.channelNumber(0x4001), .xorPeerAddress(peer.address)])
        client.sendChannelData(0x4001, [6, 6])
        #expect(peer.receive()?.data == [6, 6])
        peer.send([5], to: relay)
        #expect(client.receiveRelayed()?.data == [5])
        let snap = server.snapshot(perUser: false)
        #expect(snap.offload.entries == 0)
        #expect(snap.relayed.clientToPeer.packets == 1 && snap.relayed.peerToClient.packets == 1)
    }

    @Test("Where the program cannot be attached, Tern says why and relays in user space")
    func fallback() throws {
        guard case .unavailable(let reason) = KernelOffload.start(interfaces: ["tern-none0"]) else {
            Issue.record("attached to an interface that does not exist")
            return
        }
        #expect(reason.contains("tern-none0"))
        var io = IOConfig()
        io.offload = .tc
        io.offloadInterfaces = ["tern-none0"]
        let (server, address) = try startTurnServer(io: io)
        defer { server.stop() }
        let snap = server.snapshot(perUser: false)
        #expect(!snap.offload.active && snap.offload.mode == "tc")
        #expect(snap.offload.unavailableReason?.contains("tern-none0") == true)
        let s = try ChannelSession(server: address)
        defer { s.peer.close() }
        s.client.sendChannelData(0x4000, [1])
        #expect(s.peer.receive()?.data == [1])
    }

    @Test("Nothing stays attached or loaded once the server stops")
    func detachOnStop() throws {
        guard let server = try Self.server(.tc) else { return }
        let kernel = try #require(server.kernelOffload)
        let programs = tern_bpf_program_ids_named("tern_relay")
        #expect(programs >= 1)
        server.stop()
        #expect(kernel.isUnloaded)
        #expect(eventually { tern_bpf_program_ids_named("tern_relay") == programs - 1 })
    }
}
