import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension TernConfig {
    /// Config files larger than this are refused (a guard against pointing at /dev/zero).
    public static let maxFileSize = 1 << 20

    /// Reads and parses the file at `path`. Errors name `path` as their source; a missing or
    /// unreadable file gives the operating system's reason (`No such file or directory`).
    public static func load(path: String) throws(ConfigError) -> TernConfig {
        let bytes = try readFile(path)
        return try parse(json: bytes, source: path)
    }

    static func readFile(_ path: String) throws(ConfigError) -> [UInt8] {
        func fail(_ what: String) -> ConfigError {
            ConfigError(path: "", message: "\(what): \(String(cString: strerror(errno)))", source: path)
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw fail("cannot open config file") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw fail("cannot stat config file") }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            throw ConfigError(path: "", message: "cannot read config file: is a directory", source: path)
        }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw fail("cannot read config file")
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
            if out.count > maxFileSize {
                throw ConfigError(path: "", message: "config file is larger than \(maxFileSize) bytes", source: path)
            }
        }
        return out
    }
}
