import Foundation
import Hummingbird
import Logging
import NIOCore
import TernCore

/// The admin HTTP endpoint (Hummingbird 2): statistics, Prometheus metrics, allocation control and
/// health checks, on its own listener (never a relay port). Every route reads through
/// `AdminBackend`, so the endpoint never touches a worker's state.
///
/// Routes (described in `docs/admin-api.openapi.json`, which the tests check against this server):
/// `GET /healthz`, `GET /readyz`, `GET /metrics`, `GET /stats`, `GET /allocations?user=&client=`,
/// `GET /allocations/{id}`, `DELETE /allocations/{id}`, `GET /users/{name}`.
public final class AdminServer: Sendable {
    public let settings: AdminConfig
    let backend: any AdminBackend
    let exporter = PrometheusExporter()
    let logger: Logger

    /// Refuses a non-loopback address without a token (`AdminConfig.missingTokenProblem`).
    public init(settings: AdminConfig, backend: any AdminBackend, logger: Logger) throws(AdminError) {
        if let problem = settings.missingTokenProblem { throw AdminError(description: problem) }
        self.settings = settings
        self.backend = backend
        self.logger = logger
    }

    /// Every route, as `docs/admin-api.openapi.json` lists it (the tests compare the two).
    public static let routes: [(method: String, path: String)] = [
        ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/stats"), ("GET", "/allocations"),
        ("GET", "/allocations/{id}"), ("DELETE", "/allocations/{id}"), ("GET", "/users/{name}"),
    ]

    /// The routes, behind the bearer-token check when a token is configured.
    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        if let token = settings.token {
            router.add(middleware: BearerTokenMiddleware(token: token))
        }
        let backend = self.backend
        let exporter = self.exporter
        let perUser = settings.perUserMetrics

        router.get("/healthz") { _, _ in
            Self.json(["status": "ok"])
        }
        router.get("/readyz") { _, _ in
            backend.isReady ? Self.json(["status": "ready"])
                : Self.json(["status": "not ready"], status: .serviceUnavailable)
        }
        router.get("/metrics") { _, _ in
            let text = exporter.render(await backend.snapshot(perUser: perUser))
            return Response(status: .ok,
                            headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
        }
        router.get("/stats") { _, _ in
            Self.json(await backend.snapshot(perUser: perUser))
        }
        router.get("/allocations") { request, _ in
            let q = request.uri.queryParameters
            let list = await backend.allocations(user: q["user"].map(String.init), client: q["client"].map(String.init))
            return Self.json(AllocationList(count: list.count, allocations: list))
        }
        router.get("/allocations/:id") { _, context in
            let id = try context.parameters.require("id")
            guard let info = await backend.allocation(id: id) else { return Self.notFound("no allocation \(id)") }
            return Self.json(info)
        }
        router.delete("/allocations/:id") { _, context in
            let id = try context.parameters.require("id")
            guard await backend.deleteAllocation(id: id) else { return Self.notFound("no allocation \(id)") }
            return Self.json(["deleted": id])
        }
        router.get("/users/:name") { _, context in
            let name = try context.parameters.require("name")
            return Self.json(await backend.user(name))
        }
        return router
    }

    /// The application on `settings.address`/`port`. `onRunning` gets the bound port (port 0 picks one).
    public func application(onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        Application(
            router: router(),
            configuration: ApplicationConfiguration(
                address: .hostname("\(settings.address)", port: Int(settings.port)),
                serverName: "tern/\(ternVersion)"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? 0) },
            logger: logger)
    }

    struct AllocationList: Codable {
        var count: Int
        var allocations: [AllocationInfo]
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }()

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func notFound(_ message: String) -> Response {
        json(["error": message], status: .notFound)
    }
}

public struct AdminError: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// `Authorization: Bearer <admin.token>` on every route; anything else gets 401 and nothing more.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: [UInt8]

    init(token: String) { self.token = Array(token.utf8) }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer "),
              Self.constantTimeEqual(Array(header.utf8.dropFirst(7)), token) else {
            return Response(status: .unauthorized,
                            headers: [.wwwAuthenticate: "Bearer realm=\"tern-admin\"", .contentType: "application/json"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"error":"unauthorized"}"#)))
        }
        return try await next(request, context)
    }

    /// Compares without an early exit, so the time taken does not tell how much of a guess matched.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = UInt8(truncatingIfNeeded: a.count ^ b.count)
        for i in 0..<b.count {
            diff |= (i < a.count ? a[i] : 0) ^ b[i]
        }
        return diff == 0
    }
}
