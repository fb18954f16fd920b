import Foundation
import TernCore

/// Reading the config file: the one piece of file I/O the config needs, kept at the edge (the
/// executable), so that TernCore parses bytes and never touches the file system.
enum ConfigFile {
    /// Config files larger than this are refused (a guard against pointing at /dev/zero).
    static let maxSize = 1 << 20

    /// Reads and parses the file at `path`. Errors name `path` as their source; a missing or
    /// unreadable file gives the operating system's reason (`No such file or directory`).
    static func load(path: String) throws(ConfigError) -> TernConfig {
        try TernConfig.parse(json: try read(path), source: path, files: secretFiles)
    }

    /// Reads the secret files a config names (`{"file": ...}`), at most
    /// `SecretFileReader.maximumBytes` of each, with the operating system's reason on failure.
    static let secretFiles = SecretFileReader { path in
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            return .failure(.init("is a directory"))
        }
        let handle: FileHandle
        do {
            handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        } catch {
            return .failure(.init(reason(error)))
        }
        defer { try? handle.close() }
        do {
            let data = try handle.read(upToCount: SecretFileReader.maximumBytes + 1) ?? Data()
            guard data.count <= SecretFileReader.maximumBytes else {
                return .failure(.init("larger than \(SecretFileReader.maximumBytes) bytes; expected a secret"))
            }
            return .success([UInt8](data))
        } catch {
            return .failure(.init(reason(error)))
        }
    }

    /// A warning when the file at `path` holds secrets (passwords, shared secrets, the admin token)
    /// and other users of the host may read it (the "other" read bit; group-readable is the usual
    /// root:tern 0640 of a packaged service). nil when the file is private enough, holds no secrets,
    /// or cannot be examined.
    static func permissionWarning(path: String, config: TernConfig) -> String? {
        if config.secretSources.inline > 0, let mode = worldReadableMode(path) {
            return "config file \(path) holds passwords, secrets or the admin token and is readable by every user of this host (mode \(mode)); chmod o-r it (0600, or 0640 with the service's group)"
        }
        for file in config.secretSources.files {
            if let mode = worldReadableMode(file) {
                return "secret file \(file) is readable by every user of this host (mode \(mode)); chmod o-r it (0600, or 0640 with the service's group)"
            }
        }
        return nil
    }

    /// The file's mode in octal when every user may read it.
    private static func worldReadableMode(_ path: String) -> String? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
              let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue,
              mode & 0o004 != 0 else { return nil }
        return String(mode & 0o777, radix: 8)
    }

    static func read(_ path: String) throws(ConfigError) -> [UInt8] {
        func fail(_ what: String, _ error: Error) -> ConfigError {
            ConfigError(path: "", message: "\(what): \(reason(error))", source: path)
        }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw ConfigError(path: "", message: "cannot read config file: is a directory", source: path)
        }
        let handle: FileHandle
        do {
            handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        } catch {
            throw fail("cannot open config file", error)
        }
        defer { try? handle.close() }
        let data: Data
        do {
            data = try handle.read(upToCount: maxSize + 1) ?? Data()
        } catch {
            throw fail("cannot read config file", error)
        }
        guard data.count <= maxSize else {
            throw ConfigError(path: "", message: "config file is larger than \(maxSize) bytes", source: path)
        }
        return [UInt8](data)
    }

    /// The operating system's words for a failed file operation (`No such file or directory`),
    /// digging the POSIX error out of Foundation's wrapper.
    static func reason(_ error: Error) -> String {
        var e = error as NSError
        while e.domain != NSPOSIXErrorDomain, let underlying = e.userInfo[NSUnderlyingErrorKey] as? NSError {
            e = underlying
        }
        if e.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(e.code))) }
        return e.localizedDescription
    }
}

