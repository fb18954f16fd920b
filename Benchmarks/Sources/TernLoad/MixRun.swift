#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Histogram
import STUN

/// The client side of the mix and the two-way load: one socket per allocation (turn mode: each
/// with channel 0x4000 to the peer; direct mode: plain sockets, no server).
struct ClientSockets {
    var sessions: [TurnSession] = []
    var directSockets: [Int32] = []
    /// The live allocations' sockets, and where the peer reaches each (its relay address, or the socket).
    var fds: [Int32] = []
    var peerDestinations: [TransportAddress] = []
    var setupSeconds = 0.0
    var failedAllocations = 0

    func close() {
        tearDown(sessions)
        for fd in directSockets { Glibc.close(fd) }
    }
}

extension TernLoad {
    /// Sets up the allocations (turn mode; up to 1% may fail, and are left out) or plain sockets (direct mode).
    func openClients(server: TransportAddress, peerAddress: TransportAddress) throws -> ClientSockets {
        var c = ClientSockets()
        if mode == .turn {
            c.sessions = (0..<allocations).map { _ in TurnSession(server: server, username: user, password: password) }
            c.setupSeconds = setUp(c.sessions, peer: peerAddress)
            let failures = c.sessions.compactMap(\.failed)
            c.failedAllocations = failures.count
            if failures.count * 100 > allocations {
                print(#"{"error": "\#(failures.count) of \#(allocations) allocations failed: \#(failures[0])"}"#)
                tearDown(c.sessions)
                throw ExitCode(1)
            }
            let live = c.sessions.filter { $0.failed == nil && $0.relayed != nil }
            c.fds = live.map(\.fd)
            c.peerDestinations = live.map { $0.relayed! }
        } else {
            c.directSockets = (0..<allocations).map { _ in UDP.socket(bindTo: TransportAddress(ip: .loopbackV4, port: 0)) }
            c.fds = c.directSockets
            c.peerDestinations = c.directSockets.map(UDP.localAddress)
        }
        return c
    }

    /// One leg's JSON member: what was sent and received over it, its loss and latency.
    func legJSON(_ name: String, offered: Double, sent: Int, received: Int, seconds: Double, latency h: Histogram<UInt64>) -> String {
        let loss = sent > 0 ? max(0, Double(sent - received)) / Double(sent) : 0
        return #""\#(name)": {"offered_pps": \#(fmt(offered)), "sent": \#(sent), "sent_pps": \#(fmt(Double(sent) / seconds)), "#
            + #""received": \#(received), "loss": \#(fmt(loss, 6)), "relayed_pps": \#(fmt(Double(received) / seconds)), "#
            + latencyJSON(h) + "}"
    }

    func latencyJSON(_ h: Histogram<UInt64>) -> String {
        #""p50_us": \#(h.valueAtPercentile(50)), "p99_us": \#(h.valueAtPercentile(99)), "p999_us": \#(h.valueAtPercentile(99.9))"#
    }

    /// The fields every two-leg run ends with: totals, merged latency, server and machine CPU, set-up.
    func totalsJSON(sent: Int, received: Int, seconds: Double, merged: Histogram<UInt64>, cpu: (Double?, Double?),
                    machine: (Double?, Double?), selfStart: Double, clients: ClientSockets) -> String {
        let loss = sent > 0 ? max(0, Double(sent - received)) / Double(sent) : 0
        var out = #""sent": \#(sent), "received": \#(received), "loss": \#(fmt(loss, 6)), "relayed_pps": \#(fmt(Double(received) / seconds)), "#
        out += #""send_s": \#(fmt(seconds)), "# + latencyJSON(merged)
        if let a = cpu.0, let b = cpu.1, received > 0 {
            out += #", "cpu_s": \#(fmt(b - a)), "cpu_s_per_mpkt": \#(fmt((b - a) / Double(received) * 1e6))"#
        }
        out += machineFields(machine.0, machine.1, received: received, selfStart: selfStart)
        if mode == .turn {
            out += #", "setup_per_s": \#(fmt(Double(allocations) / clients.setupSeconds)), "failed_allocations": \#(clients.failedAllocations)"#
        }
        return out
    }

    /// `--mix`: runs both legs for `duration` and prints one JSON line with each leg and the total.
    func runMix(server: TransportAddress, peer: Int32, peerAddress: TransportAddress) throws {
        let clients = try openClients(server: server, peerAddress: peerAddress)
        // The offered total holds with a few allocations missing: the streams' rates absorb them.
        let profile = MixProfile(allocations: clients.fds.count, videoShare: videoShare)
        let natural = 2 * profile.naturalLegRate
        let scale = rate > 0 ? Double(rate) / natural : 1
        let offeredLeg = natural * scale / 2

        let toPeer = SinkReceiver(fds: [peer], stampOffset: 8, kernelTimestamps: true)
        let toClient = SinkReceiver(fds: clients.fds, stampOffset: mode == .turn ? 12 : 8, kernelTimestamps: true)
        let threads = [toPeer.start(), toClient.start()]
        let sender = MixSender(profile: profile, scale: scale, jitter: jitter, seed: seed, clientFDs: clients.fds,
                               clientDestination: mode == .turn ? server : peerAddress, peerFD: peer,
                               peerDestinations: clients.peerDestinations, channelHeader: mode == .turn, peerBatch: peerBatch)
        let cpuStart = serverPid.flatMap(processCPUSeconds)
        let machineStart = machineBusySeconds()
        let selfStart = selfCPUSeconds()
        let t0 = monotonicNanos()
        sender.run(seconds: duration)
        let sendSeconds = Double(monotonicNanos() - t0) / 1e9
        toPeer.waitQuiet(milliseconds: 200, atMost: 2000)
        toClient.waitQuiet(milliseconds: 200, atMost: 2000)
        let cpuEnd = serverPid.flatMap(processCPUSeconds)
        let machineEnd = machineBusySeconds()
        toPeer.stop()
        toClient.stop()
        for t in threads { pthread_join(t, nil) }

        var merged = toPeer.latencies
        merged.add(toClient.latencies)
        let videos = (0..<profile.allocations).filter(profile.isVideo).count
        var out = #"{"mode": "\#(mode.rawValue)", "mix": true, "allocations": \#(clients.fds.count), "video_allocations": \#(videos), "#
        out += #""size": "100-200/1000-1200", "offered_pps": \#(Int((2 * offeredLeg).rounded())), "scale": \#(fmt(scale, 4)), "jitter": \#(fmt(jitter)), "peer_batch": \#(peerBatch), "#
        out += totalsJSON(sent: sender.sentToPeer + sender.sentToClient, received: toPeer.received + toClient.received, seconds: sendSeconds,
                          merged: merged, cpu: (cpuStart, cpuEnd), machine: (machineStart, machineEnd), selfStart: selfStart, clients: clients)
        out += #", "legs": {\#(legJSON("to_peer", offered: offeredLeg, sent: sender.sentToPeer, received: toPeer.received, seconds: sendSeconds, latency: toPeer.latencies)), "#
        out += legJSON("to_client", offered: offeredLeg, sent: sender.sentToClient, received: toClient.received, seconds: sendSeconds, latency: toClient.latencies) + "}"
        print(out + "}")
        clients.close()
        close(peer)
    }

    /// `--two-way`: the smooth two-way load (TwoWay.swift) for `duration`; prints one JSON line with
    /// each leg (to_client's loss is relative to what the peer echoed), the round trip and the total.
    func runTwoWay(server: TransportAddress, peer: Int32, peerAddress: TransportAddress) throws {
        guard size >= TwoWayLoad.minimumSize, size <= 1400 else { throw ValidationError("--two-way needs --size 24...1400") }
        let clients = try openClients(server: server, peerAddress: peerAddress)
        // --rate 0: as fast as the generator can (the schedule is always due).
        let ratePerLeg = rate > 0 ? Double(rate) : 10_000_000
        let load = TwoWayLoad(clientFDs: clients.fds, destination: mode == .turn ? server : peerAddress, peerFD: peer,
                              channelHeader: mode == .turn, size: size, ratePerLeg: ratePerLeg, pairShare: pairShare,
                              jitter: jitter, seed: seed, gso: gso)
        let cpuStart = serverPid.flatMap(processCPUSeconds)
        let machineStart = machineBusySeconds()
        let selfStart = selfCPUSeconds()
        let sendSeconds = load.run(seconds: duration)
        let cpuEnd = serverPid.flatMap(processCPUSeconds)
        let machineEnd = machineBusySeconds()

        var merged = load.toPeer
        merged.add(load.toClient)
        let sentPerLeg = Double(load.sentToPeer) / sendSeconds
        // The generator could not offer the rate (more than 2% short): the figures are its, not the server's.
        let generatorBound = rate == 0 || sentPerLeg < 0.98 * Double(rate)
        var out = #"{"mode": "\#(mode.rawValue)", "two_way": true, "allocations": \#(clients.fds.count), "size": \#(size), "#
        out += #""rate_per_leg": \#(rate), "offered_pps": \#(2 * rate), "pair_share": \#(fmt(pairShare)), "#
        out += #""pairs": \#(load.pairs), "events": \#(load.events), "jitter": \#(fmt(jitter)), "gso": \#(gso), "#
        out += #""echo_ns_per_datagram": \#(fmt(load.echoNanosPerDatagram, 0)), "#
        out += #""generator_bound": \#(generatorBound), "#
        out += totalsJSON(sent: load.sentToPeer + load.echoed, received: load.receivedAtPeer + load.receivedAtClient, seconds: sendSeconds,
                          merged: merged, cpu: (cpuStart, cpuEnd), machine: (machineStart, machineEnd), selfStart: selfStart, clients: clients)
        out += #", "round_trip": {\#(latencyJSON(load.roundTrip))}"#
        out += #", "legs": {\#(legJSON("to_peer", offered: Double(rate), sent: load.sentToPeer, received: load.receivedAtPeer, seconds: sendSeconds, latency: load.toPeer)), "#
        out += legJSON("to_client", offered: Double(rate), sent: load.echoed, received: load.receivedAtClient, seconds: sendSeconds, latency: load.toClient) + "}"
        print(out + "}")
        clients.close()
        close(peer)
    }
}
