#if canImport(Glibc)
import Glibc
#endif
import Logging
import STUN
import TernCore
import Testing
@testable import TernIO

@Suite("TURN over TCP client connections (RFC 8656 section 3.1), UDP relays")
struct TurnOverTCPTests {
    @Test("Allocate over TCP; Send/Data and padded ChannelData relay both ways")
    func relayOverTCP() throws {
        try withTurnServer { server, _ in
            let address = try #require(tcpAddress(server))
            let client = try TurnTestClient(server: address, username: "alice", password: "wonderland", transport: .tcp)
            let peer = try TestPeer()
            defer { peer.close() }
            let allocated = try client.allocate()
            let relay = try #require(relayedAddresses(allocated).first, "\(allocated)")
            #expect(try client.request(.createPermission, [.xorPeerAddress(peer.address)]).type.messageClass == .successResponse)
            client.sendIndication(to: peer.address, [1, 2, 3])
            let got = try #require(peer.receive())
            #expect(got.data == [1, 2, 3])
            #expect(got.from == relay)  // the relay is UDP whatever the client transport
            peer.send([4, 5, 6, 7, 8], to: relay)
            let back = try #require(client.receiveRelayed())
            #expect(back.peer == peer.address)
            #expect(back.data == [4, 5, 6, 7, 8])
            #expect(try client.request(.channelBind, [.channelNumber(0x4001), .xorPeerAddress(peer.address)]).type.messageClass == .successResponse)
            client.sendChannelData(0x4001, [9, 9, 9])  // 3 bytes + 1 byte padding on the stream
            #expect(peer.receive()?.data == [9, 9, 9])
            peer.send([1], to: relay)
            let framed = try #require(client.receiveRelayed())
            #expect(framed.channel == 0x4001)
            #expect(framed.data == [1])
            // The next frame is read correctly after the padded one.
            peer.send([2, 2], to: relay)
            #expect(client.receiveRelayed()?.data == [2, 2])
        }
    }

    @Test("Closing the connection ends its allocation and closes the relay socket")
    func closeEndsAllocation() throws {
        try withTurnServer { server, _ in
            let address = try #require(tcpAddress(server))
            var client: TurnTestClient? = try TurnTestClient(server: address, username: "alice", password: "wonderland", transport: .tcp)
            #expect(try client?.allocate().type.messageClass == .successResponse)
            #expect(server.stats().allocations == 1)
            client = nil  // closes the socket
            #expect(eventually { server.stats().allocations == 0 && server.stats().relaySockets == 0 })
            #expect(server.stats().allocationsDeleted == 1)
        }
    }

    @Test("A client that stops reading loses relayed datagrams, not memory; others keep flowing")
    func slowReader() throws {
        var limits = LimitsConfig()
        limits.streamQueueBytes = 64 * 1024
        // The bandwidth limits off, so that the stream's own queue is what drops.
        try withTurnServer(limits: limits, settings: { $0.limits.bandwidthPerAllocation = 0; $0.limits.bandwidthPerUser = 0 }) { server, _ in
            let address = try #require(tcpAddress(server))
            let slow = try TurnTestClient(server: address, username: "alice", password: "wonderland", transport: .tcp)
            // A small receive buffer so the kernel's own buffering does not hide the queue.
            var small: Int32 = 4096
            setsockopt(slow.socket.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
            let relay = try #require(relayedAddresses(try slow.allocate()).first)
            let flooder = try TestPeer()
            defer { flooder.close() }
            #expect(try slow.request(.createPermission, [.xorPeerAddress(flooder.address)]).type.messageClass == .successResponse)
            // A well-behaved UDP client and its peer beside it.
            let good = try TurnTestClient(server: try #require(server.bound.first { $0.transport == .udp }?.address),
                                          username: "bob", password: "builder")
            let goodRelay = try #require(relayedAddresses(try good.allocate()).first)
            let goodPeer = try TestPeer()
            defer { goodPeer.close() }
            #expect(try good.request(.createPermission, [.xorPeerAddress(goodPeer.address)]).type.messageClass == .successResponse)
            // Up to 20 MB towards the client that never reads (far more than any buffer on the way),
            // in rounds, until the server starts dropping.
            let chunk = [UInt8](repeating: 0x5A, count: 1000)
            var sent = 0
            while sent < 20_000 && server.stats().io.streamRelayDropped == 0 {
                for _ in 0..<500 { flooder.send(chunk, to: relay) }
                sent += 500
            }
            #expect(eventually { server.stats().io.streamRelayDropped > 0 })
            // The slow client's connection is still there, and its allocation too.
            #expect(server.stats().allocations == 2)
            #expect(server.stats().io.tcpClosedSlowReader == 0)
            // Meanwhile the other client's traffic flows.
            for n in 0..<20 {
                goodPeer.send([UInt8(n)], to: goodRelay)
                #expect(good.receiveRelayed()?.data == [UInt8(n)])
            }
            // And the slow client, once it reads, still gets complete frames.
            let frame = try #require(slow.receiveRelayed())
            #expect(frame.data == chunk)
        }
    }
}

@Suite("Stream connection limits")
struct StreamLimitTests {
    @Test("Connections past the per-IP cap are closed at accept; a freed slot is reusable")
    func perIPCap() throws {
        var limits = LimitsConfig()
        limits.connectionsPerIP = 2
        try withServer([ListenerConfig(transport: .tcp, address: v4)], limits: limits) { server, bound in
            let a = try TestSocket.connect(.tcp, to: bound[0].address)
            let b = try TestSocket.connect(.tcp, to: bound[0].address)
            for s in [a, b] {
                s.send(bindingRequest())
                #expect(s.receiveSTUNFromStream() != nil)
            }
            let c = try TestSocket.connect(.tcp, to: bound[0].address)
            #expect(c.peerClosed())
            c.close()
            #expect(server.stats().io.tcpRefusedPerIP == 1)
            a.close()
            #expect(eventually { server.stats().connections == 1 })
            let d = try TestSocket.connect(.tcp, to: bound[0].address)
            defer { d.close(); b.close() }
            d.send(bindingRequest())
            #expect(d.receiveSTUNFromStream() != nil)
        }
    }

    @Test("Idle connections without an allocation are closed; one with an allocation stays")
    func idle() throws {
        let clock = testClock()
        try withTurnServer(clock: clock) { server, _ in
            let address = try #require(tcpAddress(server))
            let idle = try TestSocket.connect(.tcp, to: address)
            defer { idle.close() }
            let busy = try TurnTestClient(server: address, username: "alice", password: "wonderland", transport: .tcp)
            #expect(try busy.allocate().type.messageClass == .successResponse)
            clock.advance(by: 30); server.tick()
            #expect(server.stats().io.tcpClosedIdle == 0)
            clock.advance(by: 61); server.tick()
            #expect(idle.peerClosed())
            #expect(server.stats().io.tcpClosedIdle == 1)
            #expect(server.stats().allocations == 1)
            #expect(try busy.request(.refresh, []).type.messageClass == .successResponse)
        }
    }
}
