#if canImport(Glibc)
import Glibc
#endif
import STUN
import TernCore
import Testing
@testable import TernIO

@Suite("Event loops (epoll set and per-socket sources) and batched sends to peers")
struct EventLoopTests {
    static let modes: [(IOConfig.EventLoop, Bool)] = [(.epoll, true), (.epoll, false), (.sources, true), (.sources, false)]

    @Test("A burst through one channel arrives complete and in order: equal sizes (one GSO send) and mixed sizes (sendmmsg)",
          arguments: [0, 1, 2, 3])
    func burst(mode: Int) throws {
        var io = IOConfig()
        io.eventLoop = Self.modes[mode].0
        io.gso = Self.modes[mode].1
        let (server, address) = try startTurnServer(io: io)
        defer { server.stop() }
        #expect((server.workers[0].poller != nil) == (io.eventLoop == .epoll))
        let session = try ChannelSession(server: address)
        let (client, peer, relayed) = (session.client, session.peer, session.relayed)
        defer { peer.close() }
        // 48 messages back to back: they reach the server as one or a few recvmmsg batches.
        let sizes = (0..<24).map { _ in 600 } + (0..<24).map { 100 + $0 * 37 }
        var frames: [UInt8] = []
        for (i, size) in sizes.enumerated() {
            var payload = [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: size)
            payload[0] = UInt8(i)
            frames = [0x40, 0x00, UInt8(size >> 8), UInt8(size & 0xFF)] + payload
            client.sendRaw(frames)
        }
        var got: [(Int, Int)] = []
        for _ in sizes.indices {
            guard let r = peer.receive() else { break }
            #expect(r.from == relayed)
            got.append((Int(r.data[0]), r.data.count))
        }
        #expect(got.map(\.0) == Array(0..<sizes.count), "lost or reordered: \(got.map(\.0))")
        #expect(got.map(\.1) == sizes)
        // And back: peer datagrams reach the client through the same loop.
        peer.send([9, 9, 9], to: relayed)
        #expect(client.receiveRelayed()?.data == [9, 9, 9])
    }

    /// A run to one peer ending in an empty datagram (ChannelData may carry no data) cannot go as one GSO
    /// send: the kernel makes no segment of an empty iovec, so the empty datagram would be lost.
    @Test("An empty datagram at the end of a run to one peer still arrives", arguments: [0, 1, 2, 3])
    func emptyLastDatagram(mode: Int) throws {
        var io = IOConfig()
        (io.eventLoop, io.gso) = Self.modes[mode]
        let (server, address) = try startTurnServer(io: io)
        defer { server.stop() }
        let session = try ChannelSession(server: address)
        defer { session.peer.close() }
        let sizes = [100, 100, 0]
        // Held queues: the three arrive in one recvmmsg batch and leave as one run to the peer.
        holdingQueues(server.workers) {
            for (i, size) in sizes.enumerated() {
                session.client.sendRaw([0x40, 0x00, 0x00, UInt8(size)] + [UInt8](repeating: UInt8(i), count: size))
            }
        }
        var got: [Int] = []
        for _ in sizes {
            guard let r = session.peer.receive() else { break }
            got.append(r.data.count)
        }
        #expect(got == sizes)
    }

    @Test("Deleting an allocation frees its port at once, even inside a busy epoll firing")
    func portReuse() throws {
        let (server, address) = try startTurnServer(portRange: 63100...63100)
        defer { server.stop() }
        for _ in 0..<5 {
            let client = try TurnTestClient(server: address, username: "alice", password: "wonderland")
            #expect(try client.allocate().type.messageClass == .successResponse)
            #expect(try client.request(.refresh, [.lifetime(0)]).type.messageClass == .successResponse)
        }
        #expect(server.openDescriptors().count == server.bound.count * 2)
    }
}

@Suite("Relay-to-client datagrams of many relay sockets leave together")
struct ClientSendBatchTests {
    /// 24 allocations, each with its own peer; every peer sends three datagrams (92, 92 and 42 bytes)
    /// while the workers' queues are held, so they are all waiting when the workers next poll. With the
    /// epoll loop a worker's whole round leaves in one sendmmsg through the listener socket; with a
    /// source per socket, one per relay socket. With GSO each client's three leave as one segmented
    /// message. Either way each client gets exactly its own three datagrams, in order and at their
    /// sizes, and a Binding request answered in the same round (its reply uses the same send slots)
    /// gets its answer.
    @Test("Each client gets exactly its own datagrams; a round leaves in one call; a client's run in one GSO message",
          arguments: [0, 1, 2, 3])
    func manyRelaySockets(mode: Int) throws {
        var io = IOConfig()
        (io.eventLoop, io.gso) = EventLoopTests.modes[mode]
        let (server, address) = try startTurnServer(io: io)
        defer { server.stop() }
        let sessions = try (0..<24).map { _ in try ChannelSession(server: address) }
        defer { for s in sessions { s.peer.close() } }
        let workers = server.workers
        func counters() -> (calls: UInt64, segmented: UInt64) {
            workers.reduce((0, 0)) { n, w in
                let s = w.queue.sync { w.stats }
                return (n.0 + s.clientSendCalls, n.1 + s.clientSegmentedSends)
            }
        }
        let before = counters()
        let binding = try TurnTestClient(server: address, username: "alice", password: "wonderland")
        let sizes = [92, 92, 42]
        holdingQueues(workers) {
            for (i, s) in sessions.enumerated() {
                for (n, size) in sizes.enumerated() {
                    s.peer.send([UInt8(i), UInt8(n)] + [UInt8](repeating: 7, count: size - 2), to: s.relayed)
                }
            }
            binding.sendRaw(Message(type: MessageType(method: .binding, class: .request), transactionID: .random()).encode())
        }
        for (i, s) in sessions.enumerated() {
            for (n, size) in sizes.enumerated() {
                let got = s.client.receiveRelayed()
                #expect(got?.channel == 0x4000 && got?.data.prefix(2) == [UInt8(i), UInt8(n)] && got?.data.count == size,
                        "client \(i) datagram \(n): \(String(describing: got?.data.prefix(2))) \(got?.data.count ?? 0) B")
            }
        }
        let answer = binding.receiveOne().flatMap { try? Message.decode($0) }
        #expect(answer?.type == MessageType(method: .binding, class: .successResponse))
        let after = counters()
        let calls = after.calls - before.calls
        if io.eventLoop == .epoll {
            #expect(calls >= 1 && calls <= UInt64(2 * workers.count), "72 datagrams took \(calls) sendmmsg runs")
        } else {
            #expect(calls >= 24, "one relay socket per source: \(calls) runs")
        }
        #expect(after.segmented - before.segmented == (io.gso ? 24 : 0))
    }
}

/// Runs `body` while every worker's queue is held (each waits on the next), so that what it sends is all
/// waiting when the workers next poll.
func holdingQueues(_ workers: [Worker], from i: Int = 0, _ body: () -> Void) {
    if i == workers.count { body() } else { workers[i].queue.sync { holdingQueues(workers, from: i + 1, body) } }
}
