#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Histogram
import STUN

extension TernLoad {
    /// `--mix`: sets up the allocations (each with channel 0x4000 to the peer, the sink socket), runs
    /// both legs for `duration` and prints one JSON line with each leg and the total.
    func runMix(server: TransportAddress, peer: Int32, peerAddress: TransportAddress) throws {
        var sessions: [TurnSession] = []
        var directSockets: [Int32] = []
        var clientFDs: [Int32] = []
        var peerDestinations: [TransportAddress] = []
        var setupSeconds = 0.0
        var failedAllocations = 0
        if mode == .turn {
            sessions = (0..<allocations).map { _ in TurnSession(server: server, username: user, password: password) }
            setupSeconds = setUp(sessions, peer: peerAddress)
            let failures = sessions.compactMap(\.failed)
            failedAllocations = failures.count
            if failures.count * 100 > allocations {
                print(#"{"error": "\#(failures.count) of \#(allocations) allocations failed: \#(failures[0])"}"#)
                tearDown(sessions)
                throw ExitCode(1)
            }
            let live = sessions.filter { $0.failed == nil && $0.relayed != nil }
            clientFDs = live.map(\.fd)
            peerDestinations = live.map { $0.relayed! }
        } else {
            directSockets = (0..<allocations).map { _ in UDP.socket(bindTo: TransportAddress(ip: .loopbackV4, port: 0)) }
            clientFDs = directSockets
            peerDestinations = directSockets.map(UDP.localAddress)
        }
        // The offered total holds with a few allocations missing: the streams' rates absorb them.
        let profile = MixProfile(allocations: clientFDs.count, videoShare: videoShare)
        let natural = 2 * profile.naturalLegRate
        let scale = rate > 0 ? Double(rate) / natural : 1
        let offeredLeg = natural * scale / 2

        let toPeer = SinkReceiver(fds: [peer], stampOffset: 8, kernelTimestamps: true)
        let toClient = SinkReceiver(fds: clientFDs, stampOffset: mode == .turn ? 12 : 8, kernelTimestamps: true)
        let threads = [toPeer.start(), toClient.start()]
        let sender = MixSender(profile: profile, scale: scale, jitter: jitter, seed: seed, clientFDs: clientFDs,
                               clientDestination: mode == .turn ? server : peerAddress, peerFD: peer,
                               peerDestinations: peerDestinations, channelHeader: mode == .turn, peerBatch: peerBatch)
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

        let sent = sender.sentToPeer + sender.sentToClient
        let received = toPeer.received + toClient.received
        var merged = toPeer.latencies
        merged.add(toClient.latencies)
        func leg(_ name: String, _ sent: Int, _ r: SinkReceiver) -> String {
            let loss = sent > 0 ? max(0, Double(sent - r.received)) / Double(sent) : 0
            return #""\#(name)": {"offered_pps": \#(fmt(offeredLeg)), "sent": \#(sent), "sent_pps": \#(fmt(Double(sent) / sendSeconds)), "#
                + #""received": \#(r.received), "loss": \#(fmt(loss, 6)), "relayed_pps": \#(fmt(Double(r.received) / sendSeconds)), "#
                + #""p50_us": \#(fmt(r.percentile(50))), "p99_us": \#(fmt(r.percentile(99))), "p999_us": \#(fmt(r.percentile(99.9)))}"#
        }
        let loss = sent > 0 ? max(0, Double(sent - received)) / Double(sent) : 0
        let videos = (0..<profile.allocations).filter(profile.isVideo).count
        var out = #"{"mode": "\#(mode.rawValue)", "mix": true, "allocations": \#(clientFDs.count), "video_allocations": \#(videos), "#
        out += #""size": "100-200/1000-1200", "offered_pps": \#(Int((2 * offeredLeg).rounded())), "scale": \#(fmt(scale, 4)), "jitter": \#(fmt(jitter)), "peer_batch": \#(peerBatch), "#
        out += #""sent": \#(sent), "received": \#(received), "loss": \#(fmt(loss, 6)), "relayed_pps": \#(fmt(Double(received) / sendSeconds)), "#
        out += #""send_s": \#(fmt(sendSeconds)), "p50_us": \#(fmt(Double(merged.valueAtPercentile(50)))), "#
        out += #""p99_us": \#(fmt(Double(merged.valueAtPercentile(99)))), "p999_us": \#(fmt(Double(merged.valueAtPercentile(99.9)))), "#
        out += #""legs": {\#(leg("to_peer", sender.sentToPeer, toPeer)), \#(leg("to_client", sender.sentToClient, toClient))}"#
        if let a = cpuStart, let b = cpuEnd, received > 0 {
            out += #", "cpu_s": \#(fmt(b - a)), "cpu_s_per_mpkt": \#(fmt((b - a) / Double(received) * 1e6))"#
        }
        out += machineFields(machineStart, machineEnd, received: received, selfStart: selfStart)
        if mode == .turn { out += #", "setup_per_s": \#(fmt(Double(allocations) / setupSeconds)), "failed_allocations": \#(failedAllocations)"# }
        print(out + "}")
        tearDown(sessions)
        for fd in directSockets { close(fd) }
        close(peer)
    }
}
