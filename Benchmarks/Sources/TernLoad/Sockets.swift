#if canImport(Glibc)
import Glibc
#endif
import CTernShims
import STUN

/// Plain loopback UDP sockets for the load generator (the generator is not the server: it shares
/// only the wire codec with Tern).
enum UDP {
    static func socket(bindTo address: TransportAddress, receiveBuffer: Int32 = 0) -> Int32 {
        let fd = Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        precondition(fd >= 0, "socket: \(errno)")
        if receiveBuffer > 0 {
            var size = receiveBuffer
            // SO_RCVBUFFORCE (33) passes rmem_max when running as root; SO_RCVBUF otherwise.
            if setsockopt(fd, SOL_SOCKET, 33, &size, 4) != 0 { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, 4) }
            if setsockopt(fd, SOL_SOCKET, 32, &size, 4) != 0 { setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, 4) }
        }
        var addr = sockaddrIn(address)
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        precondition(r == 0, "bind \(address): \(errno)")
        return fd
    }

    static func sockaddrIn(_ a: TransportAddress) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = a.port.bigEndian
        if case .v4(let v) = a.ip { addr.sin_addr.s_addr = v.bigEndian }
        return addr
    }

    static func localAddress(_ fd: Int32) -> TransportAddress {
        var addr = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return TransportAddress(ip: .v4(UInt32(bigEndian: addr.sin_addr.s_addr)), port: UInt16(bigEndian: addr.sin_port))
    }

    /// Connects `fd` to its one destination (the kernel keeps the route; plain send() then).
    static func connect(_ fd: Int32, to a: TransportAddress) {
        var addr = sockaddrIn(a)
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        precondition(r == 0, "connect \(a): \(errno)")
    }

    static func setReceiveTimeout(_ fd: Int32, milliseconds: Int) {
        var tv = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    static func send(_ fd: Int32, _ bytes: [UInt8], to: TransportAddress) {
        var addr = sockaddrIn(to)
        _ = bytes.withUnsafeBytes { b in
            withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, b.baseAddress, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
    }

    static func receive(_ fd: Int32) -> [UInt8]? {
        var buf = [UInt8](repeating: 0, count: 2048)
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 2048, 0) }
        return n > 0 ? Array(buf[0..<n]) : nil
    }
}

/// CLOCK_MONOTONIC in nanoseconds.
@inline(__always)
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// CLOCK_REALTIME in nanoseconds (the mix's stamps, comparable with the kernel's receive timestamps).
@inline(__always)
func realtimeNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// utime + stime of a process, in seconds (/proc/PID/stat fields 14 and 15).
func processCPUSeconds(_ pid: Int32) -> Double? {
    guard let text = readFile("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
    let fields = text[text.index(after: close)...].split(separator: " ")
    // After "pid (comm)": field 3 is fields[0]; utime is field 14 -> fields[11], stime fields[12].
    guard fields.count > 12, let u = Double(fields[11]), let s = Double(fields[12]) else { return nil }
    return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// The whole machine's busy time in seconds from /proc/stat's `cpu` line: user + nice + system +
/// irq + softirq + steal (idle and iowait left out). With the kernel relaying in softirq on whichever
/// core received the packet, this (not the server process's own time) is what relaying costs.
func machineBusySeconds() -> Double? {
    guard let text = readFile("/proc/stat"), let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") })
    else { return nil }
    let f = line.split(separator: " ").dropFirst().compactMap { Double($0) }
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    guard f.count >= 8 else { return nil }
    return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// This process's own utime + stime in seconds (on loopback that includes the kernel's delivery work
/// that runs in softirq inside its system calls, and so, with the offload, the relaying).
func selfCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    let t = { (v: timeval) in Double(v.tv_sec) + Double(v.tv_usec) / 1e6 }
    return t(usage.ru_utime) + t(usage.ru_stime)
}

/// VmRSS of a process in KiB.
func processRSSKiB(_ pid: Int32) -> Int? {
    guard let text = readFile("/proc/\(pid)/status") else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ").dropFirst().first ?? "")
    }
    return nil
}

func readFile(_ path: String) -> String? {
    guard let f = fopen(path, "r") else { return nil }
    defer { fclose(f) }
    var out = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = fread(&buf, 1, 4096, f)
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}
