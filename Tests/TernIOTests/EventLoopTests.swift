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
    /// 24 allocations, each with its own peer; every peer sends two datagrams while the worker's
    /// queue is held, so they are all waiting when it next polls. With the epoll loop the whole round
    /// leaves in one sendmmsg through the listener socket; with a source per socket, one each. Either
    /// way each client gets exactly its own two datagrams, in order, and a Binding request answered in
    /// the same round (its reply uses the same send slots) gets its answer.
    @Test("Each client gets exactly its own datagrams; the epoll loop sends a round in one call",
          arguments: [IOConfig.EventLoop.epoll, .sources])
    func manyRelaySockets(loop: IOConfig.EventLoop) throws {
        var io = IOConfig()
        io.eventLoop = loop
        let (server, address) = try startTurnServer(io: io)
        defer { server.stop() }
        let sessions = try (0..<24).map { _ in try ChannelSession(server: address) }
        defer { for s in sessions { s.peer.close() } }
        let workers = server.workers
        func sendCalls() -> UInt64 { workers.reduce(0) { n, w in n + w.queue.sync { w.stats.clientSendCalls } } }
        let before = sendCalls()
        let binding = try TurnTestClient(server: address, username: "alice", password: "wonderland")
        // Every worker's queue is held (each waits on the next) while the peers send.
        func holding(_ i: Int, _ body: () -> Void) {
            if i == workers.count { body() } else { workers[i].queue.sync { holding(i + 1, body) } }
        }
        holding(0) {
            for (i, s) in sessions.enumerated() {
                s.peer.send([UInt8(i), 1] + [UInt8](repeating: 7, count: 60), to: s.relayed)
                s.peer.send([UInt8(i), 2] + [UInt8](repeating: 7, count: 90), to: s.relayed)
            }
            binding.sendRaw(Message(type: MessageType(method: .binding, class: .request), transactionID: .random()).encode())
        }
        for (i, s) in sessions.enumerated() {
            let first = s.client.receiveRelayed(), second = s.client.receiveRelayed()
            #expect(first?.channel == 0x4000 && first?.data.prefix(2) == [UInt8(i), 1] && first?.data.count == 62,
                    "client \(i) got \(String(describing: first?.data.prefix(2)))")
            #expect(second?.data.prefix(2) == [UInt8(i), 2] && second?.data.count == 92)
        }
        let answer = binding.receiveOne().flatMap { try? Message.decode($0) }
        #expect(answer?.type == MessageType(method: .binding, class: .successResponse))
        let calls = sendCalls() - before
        if loop == .epoll {
            #expect(calls >= 1 && calls <= UInt64(2 * workers.count), "48 datagrams took \(calls) sendmmsg runs")
        } else {
            #expect(calls >= 24, "one relay socket per source: \(calls) runs")
        }
    }
}
