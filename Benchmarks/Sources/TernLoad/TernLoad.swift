#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import CTernShims
import Histogram
import STUN

/// The benchmark's load generator: K TURN allocations (each its own client socket) with a channel to
/// one sink socket of this process, ChannelData at a fixed offered rate (or as fast as it can), and
/// the sink timing every packet it gets. `--mode raw` sends the bare payload to a plain forwarder
/// instead (the ceiling); `--mode direct` sends it straight to the sink, with no server in between
/// (the generator's own cost). `--mix` runs the realistic two-way mix instead (Mix.swift), `--two-way`
/// the smooth two-way load with an echoing peer (TwoWay.swift). Prints
/// one JSON line, with the server's CPU time (/proc/PID/stat) and the whole machine's (/proc/stat).
///
/// Each payload starts with a sequence number and the send time (CLOCK_MONOTONIC ns), so the sink
/// measures latency through the relay without a second clock.
@main
struct TernLoad: ParsableCommand {
    enum Mode: String, ExpressibleByArgument { case turn, raw, direct }

    @Option(help: "Server (or forwarder) address, IPv4:port (not used with --mode direct).") var server: String = "127.0.0.1:3478"
    @Option var mode: Mode = .turn
    @Option(help: "Allocations (turn) or client sockets (raw).") var allocations: Int = 1
    @Option(help: "Application payload bytes per message (ChannelData adds 4).") var size: Int = 100
    @Option(help: "Offered messages per second in total (with --mix: both legs together; with --two-way: per leg, i.e. each way, so both legs carry twice this); 0 sends as fast as possible (with --mix: the streams' own rates).") var rate: Int = 50_000
    @Option(help: "Seconds of traffic.") var duration: Double = 3
    @Option var user: String = "bench"
    @Option var password: String = "bench"
    @Option(help: "Server process id: CPU time and RSS are read from /proc.") var serverPid: Int32?
    @Option(help: "Sink port (raw mode: where the forwarder sends).") var sinkPort: UInt16 = 0
    @Flag(help: "Send each burst of messages to one socket (with --two-way: each pair) as one UDP GSO send (cheaper for the generator; over lo a TC classifier sees it as one GSO packet).") var gso = false
    @Flag(help: "Only set up the allocations and report RSS per allocation (no traffic).") var idle = false
    @Flag(help: "The realistic mix: one jittered stream per allocation each way, 80% audio-like, 20% video-like (turn or direct mode).") var mix = false
    @Flag(help: "The smooth two-way load: one jittered stream of --size datagrams per allocation (each event a single or a pair), and the peer echoes every datagram back through the server; --rate is per leg (turn or direct mode).") var twoWay = false
    @Option(help: "With --two-way: the share of events that send a pair of datagrams back to back (the rest send one).") var pairShare: Double = 0.5
    @Option(help: "With --mix: the share of video-like allocations.") var videoShare: Double = 0.2
    @Option(help: "With --mix or --two-way: each interval is the stream's mean interval times 1 +- this, uniformly.") var jitter: Double = 0.2
    @Option(help: "With --mix or --two-way: the random seed (phases, jitter, sizes, pairs).") var seed: UInt64 = 1
    @Option(help: "With --mix: the peer's datagrams leave in sendmmsg batches of up to this many (cheaper for the generator; each adds the earlier ones' send time to the later ones' latency).") var peerBatch: Int = 1

    mutating func run() throws {
        guard let serverAddress = TransportAddress(server) else { throw ValidationError("--server IPv4:port") }
        var limit = rlimit(rlim_cur: 200_000, rlim_max: 200_000)
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 {
            getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            limit.rlim_cur = limit.rlim_max
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        let sink = UDP.socket(bindTo: TransportAddress(ip: .loopbackV4, port: sinkPort), receiveBuffer: 16 << 20)
        let sinkAddress = UDP.localAddress(sink)
        if mix {
            guard mode != .raw else { throw ValidationError("--mix runs in turn or direct mode") }
            try runMix(server: serverAddress, peer: sink, peerAddress: sinkAddress)
            return
        }
        if twoWay {
            guard mode != .raw, !mix else { throw ValidationError("--two-way runs in turn or direct mode, without --mix") }
            try runTwoWay(server: serverAddress, peer: sink, peerAddress: sinkAddress)
            return
        }

        var sessions: [TurnSession] = []
        var rawSockets: [Int32] = []
        var setupSeconds = 0.0
        var failedAllocations = 0
        let rssBefore = serverPid.flatMap(processRSSKiB)
        switch mode {
        case .turn:
            sessions = (0..<allocations).map { _ in TurnSession(server: serverAddress, username: user, password: password) }
            setupSeconds = setUp(sessions, peer: idle ? nil : sinkAddress)
            // A server may drop a few set-up requests under the burst (each was retransmitted 4 times):
            // up to 1% go on without those sessions, and the count is reported.
            let failures = sessions.compactMap(\.failed)
            failedAllocations = failures.count
            if failures.count * 100 > allocations {
                print(#"{"error": "\#(failures.count) of \#(allocations) allocations failed: \#(failures[0])"}"#)
                tearDown(sessions)
                throw ExitCode(1)
            }
        case .raw, .direct:
            rawSockets = (0..<allocations).map { _ in UDP.socket(bindTo: TransportAddress(ip: .loopbackV4, port: 0)) }
        }
        if idle {
            // Let the server settle, then read its RSS with every allocation idle.
            usleep(1_000_000)
            let rssAfter = serverPid.flatMap(processRSSKiB)
            var out = #"{"allocations": \#(allocations), "failed_allocations": \#(failedAllocations), "setup_s": \#(fmt(setupSeconds)), "setup_per_s": \#(fmt(Double(allocations) / setupSeconds))"#
            if let a = rssBefore, let b = rssAfter {
                out += #", "rss_before_kib": \#(a), "rss_after_kib": \#(b), "rss_per_allocation_kib": \#(fmt(Double(b - a) / Double(allocations)))"#
            }
            print(out + "}")
            tearDown(sessions)
            return
        }

        // Destinations: each session's socket sends ChannelData to the server; raw sockets send the payload.
        let sockets = mode == .turn ? sessions.filter { $0.failed == nil }.map(\.fd) : rawSockets
        let total = rate > 0 ? Int(Double(rate) * duration) : Int.max

        let receiver = SinkReceiver(fd: sink)
        let thread = receiver.start()

        let sender = PacedSender(sockets: sockets, destination: mode == .direct ? sinkAddress : serverAddress, payloadSize: size,
                                 channelHeader: mode == .turn, gso: gso)
        let cpuStart = serverPid.flatMap(processCPUSeconds)
        let machineStart = machineBusySeconds()
        let selfStart = selfCPUSeconds()
        let t0 = monotonicNanos()
        let sent = sender.run(rate: rate, total: total, seconds: duration)
        let sendSeconds = Double(monotonicNanos() - t0) / 1e9
        // Late packets: wait until the sink has been quiet for 200 ms (at most 2 s).
        receiver.waitQuiet(milliseconds: 200, atMost: 2000)
        let cpuEnd = serverPid.flatMap(processCPUSeconds)
        let machineEnd = machineBusySeconds()
        receiver.stop()
        pthread_join(thread, nil)

        let received = receiver.received
        let loss = sent > 0 ? max(0, Double(sent - received)) / Double(sent) : 0
        var out = #"{"mode": "\#(mode.rawValue)", "allocations": \#(allocations), "size": \#(size), "offered_pps": \#(rate), "sent": \#(sent), "received": \#(received), "#
        out += #""loss": \#(fmt(loss, 6)), "relayed_pps": \#(fmt(Double(received) / sendSeconds)), "send_s": \#(fmt(sendSeconds)), "#
        out += #""p50_us": \#(fmt(receiver.percentile(50))), "p99_us": \#(fmt(receiver.percentile(99))), "p999_us": \#(fmt(receiver.percentile(99.9)))"#
        if let a = cpuStart, let b = cpuEnd, received > 0 {
            out += #", "cpu_s": \#(fmt(b - a)), "cpu_s_per_mpkt": \#(fmt((b - a) / Double(received) * 1e6))"#
        }
        out += machineFields(machineStart, machineEnd, received: received, selfStart: selfStart)
        out += #", "gso": \#(gso)"#
        if mode == .turn { out += #", "setup_per_s": \#(fmt(Double(allocations) / setupSeconds)), "failed_allocations": \#(failedAllocations)"# }
        print(out + "}")
        tearDown(sessions)
        for fd in rawSockets { close(fd) }
        close(sink)
    }
}

/// Fixed-point text for JSON (no exponent).
func fmt(_ x: Double, _ digits: Int = 3) -> String {
    guard x.isFinite else { return "null" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let n = Int64((abs(x) * scale).rounded())
    let whole = n / Int64(scale), frac = n % Int64(scale)
    var f = String(frac)
    while f.count < digits { f = "0" + f }
    return (x < 0 && n != 0 ? "-" : "") + String(whole) + (digits > 0 ? "." + f : "")
}

/// The whole machine's busy seconds over the case and per relayed packet (us), as JSON fields.
/// With `load_cpu_s`: this process's own CPU time over the case (`selfStart`, from selfCPUSeconds).
func machineFields(_ start: Double?, _ end: Double?, received: Int, selfStart: Double) -> String {
    var out = #", "load_cpu_s": \#(fmt(selfCPUSeconds() - selfStart))"#
    guard let a = start, let b = end, received > 0 else { return out }
    out += #", "machine_busy_s": \#(fmt(b - a)), "machine_us_per_pkt": \#(fmt((b - a) / Double(received) * 1e6))"#
    return out
}
