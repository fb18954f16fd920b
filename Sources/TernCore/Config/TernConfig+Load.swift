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

    /// Whether the config holds anything secret: passwords, shared secrets or the admin token.
    public var holdsSecrets: Bool {
        !auth.users.isEmpty || !auth.secrets.isEmpty || admin.token != nil
    }

    /// A warning when the file at `path` holds secrets and other users of the host may read it
    /// (the "other" read bit; group-readable is the usual root:tern 0640 of a packaged service).
    /// nil when the file is private enough, has no secrets, or cannot be examined.
    public static func permissionWarning(path: String, config: TernConfig) -> String? {
        guard config.holdsSecrets else { return nil }
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        guard st.st_mode & S_IROTH != 0 else { return nil }
        let mode = String(st.st_mode & 0o777, radix: 8)
        return "config file \(path) holds passwords, secrets or the admin token and is readable by every user of this host (mode \(mode)); chmod o-r it (0600, or 0640 with the service's group)"
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
