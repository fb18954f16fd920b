import Foundation
import STUN

/// A value in the tree JSONSerialization produced, together with its key path, so that every
/// error can name where it happened. Internal to the config parser.
struct JSONNode {
    let value: Any
    let path: String
    let source: String
    /// Reads the files `{"file": ...}` secrets name (the parser itself reads no file).
    var files: SecretFileReader = .none

    func error(_ message: String) -> ConfigError {
        ConfigError(path: path, message: message, source: source)
    }

    /// `expected X, found Y`.
    func mismatch(_ expected: String) -> ConfigError {
        error("expected \(expected), found \(JSONNode.describe(value))")
    }

    var isNull: Bool { value is NSNull }

    // MARK: Objects

    /// The members of an object, after checking that it has no key outside `known`.
    func object(known: [String]) throws(ConfigError) -> JSONObject {
        guard let dict = value as? [String: Any] else { throw mismatch("an object") }
        if let unknown = dict.keys.filter({ !known.contains($0) }).sorted().first {
            throw ConfigError(path: child(unknown), message: "unknown key; expected one of \(known.joined(separator: ", "))",
                              source: source)
        }
        return JSONObject(node: self, members: dict)
    }

    /// The members of an object whose keys are data (such as user names), not schema.
    func dictionary(_ expected: String) throws(ConfigError) -> [(key: String, node: JSONNode)] {
        guard let dict = value as? [String: Any] else { throw mismatch(expected) }
        return dict.sorted { $0.key < $1.key }.map { (key: $0.key, node: JSONNode(value: $0.value, path: child($0.key), source: source, files: files)) }
    }

    func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    // MARK: Arrays

    func array(_ expected: String) throws(ConfigError) -> [JSONNode] {
        guard let items = value as? [Any] else { throw mismatch(expected) }
        return items.enumerated().map { JSONNode(value: $0.element, path: "\(path)[\($0.offset)]", source: source, files: files) }
    }

    // MARK: Scalars

    func string(_ expected: String = "a string") throws(ConfigError) -> String {
        guard let s = value as? String else { throw mismatch(expected) }
        return s
    }

    func boolean(_ expected: String = "true or false") throws(ConfigError) -> Bool {
        guard JSONNode.isBoolean(value), let b = value as? NSNumber else { throw mismatch(expected) }
        return b.boolValue
    }

    func nonEmptyString(_ expected: String = "a non-empty string") throws(ConfigError) -> String {
        let s = try string(expected)
        guard !s.isEmpty else { throw mismatch(expected) }
        return s
    }

    /// A secret: a non-empty string, or `{"file": "/absolute/path"}` naming a file whose content,
    /// without one trailing newline (`\n` or `\r\n`), is the value. The file is read (through
    /// `files`) at every parse, so a SIGHUP reload re-reads it; Kubernetes Secret volumes and
    /// systemd credentials work this way. A missing, unreadable, empty or non-UTF-8 file is an
    /// error at this key's path.
    func secret(_ expected: String = "a non-empty string or {\"file\": \"/path\"}") throws(ConfigError) -> String {
        if value is String { return try nonEmptyString(expected) }
        guard value is [String: Any] else { throw mismatch(expected) }
        let obj = try object(known: ["file"])
        guard let f = obj["file"] else { throw error("expected {\"file\": \"/path\"}: the file key is missing") }
        let path = try f.nonEmptyString("an absolute file path")
        guard path.hasPrefix("/") else { throw f.error("expected an absolute file path, found \"\(path)\"") }
        var bytes: [UInt8]
        switch files.read(path) {
        case .success(let b): bytes = b
        case .failure(let problem): throw f.error("cannot read \(path): \(problem.reason)")
        }
        if bytes.last == 0x0A { bytes.removeLast(); if bytes.last == 0x0D { bytes.removeLast() } }
        guard !bytes.isEmpty else { throw f.error("\(path) is empty; expected the secret") }
        let text = String(decoding: bytes, as: UTF8.self)
        guard text.utf8.elementsEqual(bytes) else { throw f.error("\(path) is not UTF-8 text") }
        return text
    }

    /// An integer in `range`. Booleans and numbers written with a fraction or exponent are refused.
    func integer(in range: ClosedRange<Int>, _ expected: String? = nil) throws(ConfigError) -> Int {
        let expected = expected ?? "an integer \(range.lowerBound)...\(range.upperBound)"
        guard let n = JSONNode.integerValue(value), range.contains(n) else { throw mismatch(expected) }
        return n
    }

    func ipAddress(_ expected: String = "an IP address such as \"192.0.2.1\" or \"2001:db8::1\"")
        throws(ConfigError) -> IPAddress {
        guard let s = value as? String, let ip = IPAddress(s) else { throw mismatch(expected) }
        return ip
    }

    // MARK: Classifying Foundation values

    /// JSONSerialization gives `true`/`false` as NSNumber too, and on Linux `x as? Bool` and
    /// `x as? Int` both succeed for them (and `as? Bool` succeeds for the numbers 0 and 1).
    /// The reliable mark is the Objective-C type code: "c" (char) for booleans on both Darwin
    /// and swift-corelibs-foundation; JSON numbers are never stored as char.
    static func isBoolean(_ value: Any) -> Bool {
        guard let n = value as? NSNumber else { return false }
        return n.objCType.pointee == CChar(UInt8(ascii: "c"))
    }

    /// The value as an Int when it is a JSON integer (not a boolean, not written as 1.5, 1.0 or 1e2).
    static func integerValue(_ value: Any) -> Int? {
        guard let n = value as? NSNumber, !(value is String), !isBoolean(value) else { return nil }
        switch UInt8(bitPattern: n.objCType.pointee) {
        case UInt8(ascii: "s"), UInt8(ascii: "i"), UInt8(ascii: "l"), UInt8(ascii: "q"),
             UInt8(ascii: "C"), UInt8(ascii: "S"), UInt8(ascii: "I"):
            return Int(exactly: n.int64Value)
        case UInt8(ascii: "L"), UInt8(ascii: "Q"):
            return Int(exactly: n.uint64Value)
        default:
            return nil
        }
    }

    /// `string "x"`, `true`, `null`, `integer 70000`, `number 1.5`, `an array`, `an object`.
    static func describe(_ value: Any) -> String {
        if value is NSNull { return "null" }
        if let s = value as? String {
            let shown = s.count > 60 ? String(s.prefix(57)) + "..." : s
            return "string \(String(reflecting: shown))"
        }
        if isBoolean(value), let b = value as? NSNumber { return b.boolValue ? "true" : "false" }
        if let i = integerValue(value) { return "integer \(i)" }
        if let n = value as? NSNumber { return "number \(n)" }
        if value is [Any] { return "an array" }
        if value is [String: Any] { return "an object" }
        return "\(type(of: value))"
    }
}

/// An object whose keys have been checked; hands out its members as nodes.
struct JSONObject {
    let node: JSONNode
    let members: [String: Any]

    /// The member, or nil when the key is absent.
    subscript(key: String) -> JSONNode? {
        members[key].map { JSONNode(value: $0, path: node.child(key), source: node.source, files: node.files) }
    }

    /// The member, or nil when the key is absent or null.
    func nonNull(_ key: String) -> JSONNode? {
        guard let n = self[key], !n.isNull else { return nil }
        return n
    }
}

extension TernConfig {
    /// A JSONSerialization value as an Int when it is a JSON integer: not a boolean, and not written
    /// with a fraction or an exponent (the config's rule, for other JSON readers of Tern).
    public static func jsonInteger(_ value: Any) -> Int? { JSONNode.integerValue(value) }
}

/// How the config parser gets the content of a secret file: the executable passes one that reads
/// the file system (`ConfigFile`), tests pass their own; the parser reads no file itself.
public struct SecretFileReader: Sendable {
    /// Why a file could not be read ("no such file", "permission denied", ...).
    public struct Problem: Error, Sendable {
        public var reason: String
        public init(_ reason: String) { self.reason = reason }
    }

    public let read: @Sendable (String) -> Result<[UInt8], Problem>

    public init(_ read: @escaping @Sendable (String) -> Result<[UInt8], Problem>) { self.read = read }

    /// Refuses every file: a config parsed from bytes alone cannot name secret files.
    public static let none = SecretFileReader { _ in .failure(Problem("secret files are not read here (the config was not loaded from a file)")) }

    /// The largest secret file read: 64 KiB (a password, a secret or a token is far smaller).
    public static let maximumBytes = 65_536
}
