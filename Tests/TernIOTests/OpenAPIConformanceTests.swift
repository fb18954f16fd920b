import Foundation
import Hummingbird
import HummingbirdTesting
import STUN
import TernAdmin
import TernCore
import Testing
@testable import TernIO

/// A small JSON Schema checker for the subset the admin API's OpenAPI document uses: `$ref`, `type`,
/// `properties`, `required`, `additionalProperties` (false or a schema), `items`, `enum`, `minimum`, `maximum`.
struct SchemaChecker {
    let components: [String: Any]

    func check(_ value: Any, against schema: [String: Any], at path: String = "$") -> [String] {
        if let ref = schema["$ref"] as? String {
            let name = String(ref.split(separator: "/").last ?? "")
            guard let target = components[name] as? [String: Any] else { return ["\(path): unresolved \(ref)"] }
            return check(value, against: target, at: path)
        }
        var problems: [String] = []
        switch schema["type"] as? String {
        case "object":
            guard let object = value as? [String: Any] else { return ["\(path): expected an object"] }
            let properties = schema["properties"] as? [String: Any] ?? [:]
            for key in schema["required"] as? [String] ?? [] where object[key] == nil {
                problems.append("\(path): missing required \(key)")
            }
            for (key, v) in object {
                if let p = properties[key] as? [String: Any] {
                    problems += check(v, against: p, at: "\(path).\(key)")
                } else if let extra = schema["additionalProperties"] as? [String: Any] {
                    problems += check(v, against: extra, at: "\(path).\(key)")
                } else if (schema["additionalProperties"] as? Bool) == false {
                    problems.append("\(path): undocumented property \(key)")
                }
            }
        case "array":
            guard let array = value as? [Any] else { return ["\(path): expected an array"] }
            if let items = schema["items"] as? [String: Any] {
                for (i, v) in array.enumerated() { problems += check(v, against: items, at: "\(path)[\(i)]") }
            }
        case "string":
            guard let s = value as? String else { return ["\(path): expected a string"] }
            if let allowed = schema["enum"] as? [String], !allowed.contains(s) { problems.append("\(path): \(s) not in \(allowed)") }
        case "integer", "number":
            guard let n = value as? NSNumber, !JSONBoolean.isBoolean(n) else {
                return ["\(path): expected a number"]
            }
            if schema["type"] as? String == "integer", n.doubleValue != n.doubleValue.rounded() { problems.append("\(path): not an integer") }
            if let min = schema["minimum"] as? NSNumber, n.doubleValue < min.doubleValue { problems.append("\(path): below \(min)") }
            if let max = schema["maximum"] as? NSNumber, n.doubleValue > max.doubleValue { problems.append("\(path): above \(max)") }
        case "boolean":
            guard (value as? NSNumber).map({ JSONBoolean.isBoolean($0) }) == true else { return ["\(path): expected a boolean"] }
        default:
            break
        }
        return problems
    }
}

enum JSONBoolean {
    static func isBoolean(_ n: NSNumber) -> Bool { n.objCType.pointee == CChar(UInt8(ascii: "c")) }
}

@Suite("docs/admin-api.openapi.json against the running admin endpoint")
struct OpenAPIConformanceTests {
    static let documentURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs/admin-api.openapi.json")

    @Test("Every documented operation answers with a documented status and a body that matches its schema; every route is documented")
    func conformance() async throws {
        let document = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: Self.documentURL)) as? [String: Any])
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        let components = try #require((document["components"] as? [String: Any])?["schemas"] as? [String: Any])
        let checker = SchemaChecker(components: components)

        // The routes the server registers, and the document's operations, are the same set.
        let documented = Set(paths.flatMap { path, item in
            item.keys.filter { ["get", "put", "post", "delete", "patch"].contains($0) }.map { "\($0.uppercased()) \(path)" }
        })
        #expect(documented == Set(AdminServer.routes.map { "\($0.method) \($0.path)" }))

        let (server, address) = try startTurnServer()
        defer { server.stop() }
        let session = try ChannelSession(server: address)
        let (client, peer) = (session.client, session.peer)
        defer { peer.close() }
        #expect(relayThroughChannel(client, peer: peer, count: 2) == 2)
        let id = try #require(server.allocationInfos(user: nil, client: nil).first?.id)
        let issuer = CredentialIssuer(secret: testSecrets[0], urls: ["turn:\(address)?transport=udp"])
        let admin = try AdminServer(settings: AdminConfig(port: 0, perUserMetrics: true),
                                    backend: ServerAdminBackend(server, credentials: issuer), logger: quietAdminLogger)

        try await admin.application().test(.router) { http in
            // Each operation with arguments that succeed, then ones that do not (404), in an order
            // that keeps the allocation until the DELETE.
            let calls: [(String, HTTPRequest.Method, String)] = [
                ("/healthz", .get, "/healthz"), ("/readyz", .get, "/readyz"), ("/metrics", .get, "/metrics"),
                ("/stats", .get, "/stats"), ("/allocations", .get, "/allocations"),
                ("/allocations", .get, "/allocations?user=alice&client=127.0.0.1"),
                ("/allocations/{id}", .get, "/allocations/\(id)"), ("/allocations/{id}", .get, "/allocations/0"),
                ("/users/{name}", .get, "/users/alice"), ("/users/{name}", .get, "/users/nobody"),
                ("/allocations/{id}", .delete, "/allocations/\(id)"), ("/allocations/{id}", .delete, "/allocations/\(id)"),
                ("/users/{name}/allocations", .delete, "/users/alice/allocations"),
                ("/users/{name}/allocations", .delete, "/users/nobody/allocations"),
                ("/", .get, "/"), ("/selftest", .get, "/selftest"), ("/credentials", .post, "/credentials"),
            ]
            var seen = Set<String>()
            for (template, method, uri) in calls {
                let operation = try #require(paths[template]?[method.rawValue.lowercased()] as? [String: Any], "\(method) \(template)")
                let responses = try #require(operation["responses"] as? [String: Any])
                let answer = try await adminRequest(http, uri, method: method)
                seen.insert("\(method.rawValue) \(template)")
                let documentedResponse = try #require(responses[String(answer.status)] as? [String: Any],
                                                      "\(method) \(uri): status \(answer.status) is not documented")
                let content = try #require(documentedResponse["content"] as? [String: Any])
                if let json = content["application/json"] as? [String: Any] {
                    #expect(answer.contentType == "application/json", "\(uri)")
                    let schema = try #require(json["schema"] as? [String: Any])
                    let body = try #require(answer.json, "\(uri): body is not JSON")
                    let problems = checker.check(body, against: schema)
                    #expect(problems.isEmpty, "\(method) \(uri): \(problems)")
                } else {
                    let kind = try #require(content.keys.first, "\(uri): no documented content type")
                    #expect(answer.contentType.hasPrefix(kind), "\(uri): \(answer.contentType), documented \(kind)")
                }
            }
            #expect(seen == documented, "operations not exercised: \(documented.subtracting(seen))")
            // Draining: /readyz answers its documented 503.
            server.startDraining(DrainConfig())
            let notReady = try await adminRequest(http, "/readyz")
            #expect(notReady.status == 503)
            let schema = try #require(((((paths["/readyz"]?["get"] as? [String: Any])?["responses"] as? [String: Any])?["503"]
                as? [String: Any])?["content"] as? [String: Any])?["application/json"] as? [String: Any])
            #expect(checker.check(try #require(notReady.json), against: try #require(schema["schema"] as? [String: Any])).isEmpty)
        }
    }
}
