import Foundation
import STUN

/// The built `tern` executable run as a child process, as an operator runs it.
/// SwiftPM puts the executable next to the test bundle, in the same build directory.
final class TernProcess {
    let process = Process()
    private let stderrPipe = Pipe()
    private let stdoutPipe = Pipe()
    private let lock = NSLock()
    private var stderrText = ""
    private var stdoutText = ""
    let configURL: URL?

    static var executableURL: URL {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        // Inside "<build>/debug/tern-PackageTests.xctest" on Linux the binary is the bundle itself.
        while dir.pathExtension == "xctest" { dir = dir.deletingLastPathComponent() }
        return dir.appendingPathComponent("tern")
    }

    /// Starts `tern serve`, with `config` written to a temporary file when given; through `wrapper`
    /// (a command that then runs tern, such as `setpriv ... --`) when one is given.
    init(config: String?, environment: [String: String] = [:], wrapper: [String] = []) throws {
        if var config {
            // Tests run side by side: unless a test sets its own, the admin endpoint takes a free port.
            if !config.contains("\"admin\""), let brace = config.firstIndex(of: "{") {
                config.insert(contentsOf: #""admin": {"port": 0}, "#, at: config.index(after: brace))
            }
            let url = FileManager.default.temporaryDirectory.appendingPathComponent("tern-test-\(UUID().uuidString).json")
            try config.write(to: url, atomically: true, encoding: .utf8)
            configURL = url
        } else {
            configURL = nil
        }
        let serve = ["serve"] + (configURL.map { ["--config", $0.path] } ?? [])
        if let launcher = wrapper.first {
            process.executableURL = URL(fileURLWithPath: launcher)
            process.arguments = Array(wrapper.dropFirst()) + [Self.executableURL.path] + serve
        } else {
            process.executableURL = Self.executableURL
            process.arguments = serve
        }
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.standardError = stderrPipe
        process.standardOutput = stdoutPipe
        stderrPipe.fileHandleForReading.readabilityHandler = { [weak self] h in
            let data = h.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.lock()
            self.stderrText += String(decoding: data, as: UTF8.self)
            self.lock.unlock()
        }
        stdoutPipe.fileHandleForReading.readabilityHandler = { [weak self] h in
            let data = h.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.lock()
            self.stdoutText += String(decoding: data, as: UTF8.self)
            self.lock.unlock()
        }
        try process.run()
    }

    var stderr: String {
        lock.lock()
        defer { lock.unlock() }
        return stderrText
    }

    /// What tern printed on standard output (the built-in default's greeting).
    var stdout: String {
        lock.lock()
        defer { lock.unlock() }
        return stdoutText
    }


    /// Waits (bounded) until stderr contains `text`.
    func waitForLog(_ text: String, timeout: TimeInterval = 20) -> Bool {
        wait(until: { self.stderr.contains(text) }, timeout: timeout)
    }

    /// Waits (bounded) until standard output contains `text`.
    func waitForOutput(_ text: String, timeout: TimeInterval = 20) -> Bool {
        wait(until: { self.stdout.contains(text) }, timeout: timeout)
    }

    private func wait(until condition: () -> Bool, timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            if !process.isRunning { return condition() }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return false
    }

    /// The listeners tern logged at start ("udp 127.0.0.1:40000, tcp ...").
    func boundListeners() -> [(transport: String, address: TransportAddress)] {
        guard let line = stderr.split(separator: "\n").first(where: { $0.contains("tern listening") }),
              let start = line.range(of: "listeners=") else { return [] }
        var rest = line[start.upperBound...]
        // Metadata is printed sorted by key: the listeners run up to the next " key=".
        for key in [" turn=", " workers=", " config="] {
            if let end = rest.range(of: key) { rest = rest[..<end.lowerBound] }
        }
        return rest.split(separator: ",").compactMap { item in
            let parts = item.trimmingCharacters(in: .whitespaces).split(separator: " ", maxSplits: 1)
            guard parts.count == 2, let a = TransportAddress(String(parts[1])) else { return nil }
            return (String(parts[0]), a)
        }
    }

    /// The admin endpoint's address, from the "admin listening" log line.
    func adminAddress() -> TransportAddress? {
        guard let line = stderr.split(separator: "\n").first(where: { $0.contains("admin listening") }),
              let start = line.range(of: "address=") else { return nil }
        return TransportAddress(String(line[start.upperBound...].prefix { $0 != " " }))
    }

    /// SIGTERM, then wait (bounded) for exit; returns the exit status, nil if it did not exit.
    func terminate(timeout: TimeInterval = 10) -> Int32? {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        if let configURL { try? FileManager.default.removeItem(at: configURL) }
        return process.terminationStatus
    }
}

/// A plain HTTP/1.1 request over a loopback socket (status and body), bounded by `timeout`.
func httpRequest(_ address: TransportAddress, _ path: String, method: String = "GET", token: String? = nil,
                 timeout: Int = 5) -> (status: Int, body: String)? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var tv = timeval(tv_sec: timeout, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = address.port.bigEndian
    addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    let c = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard c == 0 else { return nil }
    var request = "\(method) \(path) HTTP/1.1\r\nHost: \(address)\r\nConnection: close\r\n"
    if let token { request += "Authorization: Bearer \(token)\r\n" }
    request += "\r\n"
    _ = request.utf8CString.withUnsafeBytes { send(fd, $0.baseAddress, $0.count - 1, 0) }
    var data = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 65536)
    while data.count < 4_000_000 {
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 65536, 0) }
        if n <= 0 { break }
        data += buf[0..<n]
    }
    let text = String(decoding: data, as: UTF8.self)
    guard let head = text.range(of: "\r\n\r\n"), let statusLine = text.split(separator: "\r\n").first else { return nil }
    let parts = statusLine.split(separator: " ")
    guard parts.count >= 2, let status = Int(parts[1]) else { return nil }
    return (status, String(text[head.upperBound...]))
}

/// Runs a command to completion (bounded by `timeout`), returning its exit status and output.
func runTool(_ path: String, _ arguments: [String], timeout: TimeInterval = 30) throws -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = arguments
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    try p.run()
    final class Box: @unchecked Sendable { var data = Data() }
    let box = Box()
    let handle = out.fileHandleForReading
    let reader = Thread { box.data = handle.readDataToEndOfFile() }
    reader.start()
    let deadline = Date().addingTimeInterval(timeout)
    while p.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
    // SIGKILL: children of the test runner inherit a signal mask that blocks SIGTERM.
    if p.isRunning { kill(p.processIdentifier, SIGKILL) }
    p.waitUntilExit()
    // The pipe ends when the last writer goes; a descendant that kept it open must not hang the test.
    let readBy = Date().addingTimeInterval(5)
    while !reader.isFinished && Date() < readBy { Thread.sleep(forTimeInterval: 0.01) }
    guard reader.isFinished else { return (p.terminationStatus, "(output incomplete: a descendant of \(path) kept the pipe open)") }
    return (p.terminationStatus, String(decoding: box.data, as: UTF8.self))
}

/// One integer from a running server's admin `/stats`, by its keys (`["allocations", "active"]`);
/// nil when the endpoint does not answer or has no such number.
func adminStat(_ admin: TransportAddress, _ path: [String]) -> Int? {
    guard let body = httpRequest(admin, "/stats")?.body,
          var node = try? JSONSerialization.jsonObject(with: Data(body.utf8)) else { return nil }
    for key in path {
        guard let next = (node as? [String: Any])?[key] else { return nil }
        node = next
    }
    return (node as? NSNumber)?.intValue
}
