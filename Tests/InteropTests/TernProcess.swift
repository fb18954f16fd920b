import Foundation
import STUN

/// The built `tern` executable run as a child process, as an operator runs it.
/// SwiftPM puts the executable next to the test bundle, in the same build directory.
final class TernProcess {
    let process = Process()
    private let stderrPipe = Pipe()
    private let lock = NSLock()
    private var stderrText = ""
    let configURL: URL?

    static var executableURL: URL {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        // Inside "<build>/debug/tern-PackageTests.xctest" on Linux the binary is the bundle itself.
        while dir.pathExtension == "xctest" { dir = dir.deletingLastPathComponent() }
        return dir.appendingPathComponent("tern")
    }

    /// Starts `tern serve`, with `config` written to a temporary file when given.
    init(config: String?, environment: [String: String] = [:]) throws {
        if let config {
            let url = FileManager.default.temporaryDirectory.appendingPathComponent("tern-test-\(UUID().uuidString).json")
            try config.write(to: url, atomically: true, encoding: .utf8)
            configURL = url
        } else {
            configURL = nil
        }
        process.executableURL = Self.executableURL
        process.arguments = ["serve"] + (configURL.map { ["--config", $0.path] } ?? [])
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.standardError = stderrPipe
        process.standardOutput = FileHandle.nullDevice
        stderrPipe.fileHandleForReading.readabilityHandler = { [weak self] h in
            let data = h.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.lock()
            self.stderrText += String(decoding: data, as: UTF8.self)
            self.lock.unlock()
        }
        try process.run()
    }

    var stderr: String {
        lock.lock()
        defer { lock.unlock() }
        return stderrText
    }

    /// Waits (bounded) until stderr contains `text`.
    func waitForLog(_ text: String, timeout: TimeInterval = 20) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if stderr.contains(text) { return true }
            if !process.isRunning { return stderr.contains(text) }
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
    while !reader.isFinished { Thread.sleep(forTimeInterval: 0.01) }
    return (p.terminationStatus, String(decoding: box.data, as: UTF8.self))
}
