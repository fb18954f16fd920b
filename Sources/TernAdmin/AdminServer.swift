import Foundation
import Hummingbird
import Logging
import NIOCore
import STUN
import TernCore

/// The admin HTTP endpoint (Hummingbird 2): statistics, Prometheus metrics, allocation control and
/// health checks, on its own listener (never a relay port). Every route reads through
/// `AdminBackend`, so the endpoint never touches a worker's state.
///
/// The routes are listed once, in `table`; `docs/admin-api.openapi.json` describes them, and the
/// tests check that document against this server.
public final class AdminServer: Sendable {
    public let settings: AdminConfig
    let backend: any AdminBackend
    let exporter = PrometheusExporter()
    let logger: Logger
    /// SHA-256 of the bearer token in force; a reload replaces it (`updateToken`).
    let tokenDigest: TokenDigest

    /// Refuses a non-loopback address without a token (`AdminConfig.missingTokenProblem`).
    public init(settings: AdminConfig, backend: any AdminBackend, logger: Logger) throws(AdminError) {
        if let problem = settings.missingTokenProblem { throw AdminError(description: problem) }
        self.settings = settings
        self.backend = backend
        self.logger = logger
        self.tokenDigest = TokenDigest(settings.token ?? "")
    }

    /// A reload's new token (a `{"file": ...}` token re-read): required from the next request on.
    /// An endpoint started without a token keeps serving without one until a restart.
    public func updateToken(_ token: String) {
        tokenDigest.replace(with: token)
    }

    /// One route: its method, its path as `docs/admin-api.openapi.json` writes it (`{id}` for a
    /// parameter, which Hummingbird's router reads the same way), and what answers it.
    struct Route: Sendable {
        let method: HTTPRequest.Method
        let path: String
        let respond: @Sendable (AdminServer, Request, BasicRequestContext) async throws -> Response
    }

    /// The one route table: `router()` registers it and `routes` lists it (the tests compare that list
    /// with the OpenAPI document).
    static let table: [Route] = [
        // The dashboard: a static page (no data in it), served without the token; it asks for the
        // token itself and sends it with every /stats request.
        Route(method: .get, path: "/") { _, _, _ in
            page(DashboardPage.html)
        },
        // The in-browser self-test: ICE gathering per public URL and a relayed video call.
        Route(method: .get, path: "/selftest") { _, _, _ in
            page(SelfTestPage.html)
        },
        Route(method: .get, path: "/healthz") { server, _, _ in
            server.json(["status": "ok"])
        },
        Route(method: .get, path: "/readyz") { server, _, _ in
            server.backend.isReady ? server.json(["status": "ready"])
                : server.json(["status": "not ready"], status: .serviceUnavailable)
        },
        Route(method: .get, path: "/metrics") { server, _, _ in
            let text = server.exporter.render(await server.backend.snapshot(perUser: server.settings.perUserMetrics))
            return Response(status: .ok,
                            headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
        },
        Route(method: .get, path: "/stats") { server, _, _ in
            server.json(await server.backend.snapshot(perUser: server.settings.perUserMetrics))
        },
        Route(method: .get, path: "/allocations") { server, request, _ in
            let q = request.uri.queryParameters
            let list = await server.backend.allocations(user: q["user"].map(String.init), client: q["client"].map(String.init))
            return server.json(AllocationList(count: list.count, allocations: list))
        },
        Route(method: .get, path: "/allocations/{id}") { server, _, context in
            let id = try context.parameters.require("id")
            guard let info = await server.backend.allocation(id: id) else { return server.notFound("no allocation \(id)") }
            return server.json(info)
        },
        Route(method: .delete, path: "/allocations/{id}") { server, _, context in
            let id = try context.parameters.require("id")
            guard await server.backend.deleteAllocation(id: id) else { return server.notFound("no allocation \(id)") }
            return server.json(["deleted": id])
        },
        Route(method: .get, path: "/users/{name}") { server, _, context in
            let name = try context.parameters.require("name")
            return server.json(await server.backend.user(name))
        },
        // Short-lived TURN REST credentials for an application's backend, which never holds the secret.
        Route(method: .post, path: "/credentials") { server, request, _ in
            let body = try await request.body.collect(upTo: 16_384)
            let parsed = CredentialRequest.parse(Array(buffer: body))
            guard case .success(let ask) = parsed else {
                if case .failure(let message) = parsed { return server.json(["error": message.description], status: .badRequest) }
                return server.json(["error": "bad request"], status: .badRequest)
            }
            switch await server.backend.issueCredential(user: ask.user, ttl: ask.ttl) {
            case .success(let ice): return server.json(ice)
            case .failure(.noSecret): return server.json(["error": CredentialIssuer.Problem.noSecret.description], status: .conflict)
            case .failure(let p): return server.json(["error": p.description], status: .badRequest)
            }
        },
        // Revocation: with credentials re-checked on every request, removing a user (or rotating
        // the TURN REST secret) and then ending its allocations here leaves it nothing.
        Route(method: .delete, path: "/users/{name}/allocations") { server, _, context in
            let name = try context.parameters.require("name")
            let n = await server.backend.deleteAllocations(ofUser: name)
            return server.json(UserAllocationsDeleted(user: name, deleted: n))
        },
    ]

    /// Every route as method and path, in the OpenAPI document's spelling.
    public static var routes: [(method: String, path: String)] {
        table.map { ($0.method.rawValue, $0.path) }
    }

    /// The routes, behind the bearer-token check when a token is configured.
    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        if settings.token != nil {
            router.add(middleware: BearerTokenMiddleware(digest: tokenDigest))
        }
        for route in Self.table {
            router.on(RouterPath(route.path), method: route.method) { request, context in
                try await route.respond(self, request, context)
            }
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

    /// The body of `POST /credentials`: empty, or a JSON object with optional `user` (a string) and
    /// `ttl` (an integer number of seconds); anything else is a 400 that says what is wrong.
    struct CredentialRequest {
        var user: String?
        var ttl: Int?

        struct Message: Error, CustomStringConvertible { var description: String }

        static func parse(_ bytes: [UInt8]) -> Result<CredentialRequest, Message> {
            if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return .success(CredentialRequest()) }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] else {
                return .failure(Message(description: "the body must be a JSON object such as {\"user\": \"alice\", \"ttl\": 3600}, or empty"))
            }
            if let unknown = object.keys.first(where: { $0 != "user" && $0 != "ttl" }) {
                return .failure(Message(description: "unknown key \"\(unknown)\": only user and ttl are accepted"))
            }
            var ask = CredentialRequest()
            if let u = object["user"] {
                guard let s = u as? String else { return .failure(Message(description: "user must be a string")) }
                ask.user = s
            }
            if let t = object["ttl"] {
                guard let i = TernConfig.jsonInteger(t) else {
                    return .failure(Message(description: "ttl must be an integer number of seconds"))
                }
                ask.ttl = i
            }
            return .success(ask)
        }
    }

    struct UserAllocationsDeleted: Codable {
        var user: String
        var deleted: Int
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

    /// `value` as JSON with `status`. A value that does not encode is a bug here, not the client's:
    /// it is logged and answered with 500 and a JSON error (never a made-up empty body).
    func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
        Self.json(value, status: status, logger: logger)
    }

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok, logger: Logger) -> Response {
        let (status, data) = encoded(value, status: status, logger: logger)
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// The status and JSON body for `value`: `status` and its encoding, or 500 and an error object.
    static func encoded<T: Encodable>(_ value: T, status: HTTPResponse.Status, logger: Logger) -> (HTTPResponse.Status, Data) {
        do {
            return (status, try encoder.encode(value))
        } catch {
            logger.error("admin: cannot encode the answer", metadata: ["type": "\(T.self)", "error": "\(error)"])
            return (.internalServerError, Data(#"{"error":"internal error: the answer could not be encoded"}"#.utf8))
        }
    }

    /// An HTML page with its own inline assets: no framing by other sites (CSP frame-ancestors),
    /// scripts and styles only from the page itself, fetches only to this endpoint.
    static func page(_ html: String) -> Response {
        Response(status: .ok,
                 headers: [.contentType: "text/html; charset=utf-8",
                           .contentSecurityPolicy: "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'",
                           .cacheControl: "no-store"],
                 body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
    }

    /// Served without the bearer token: pages that carry no data (they ask for the token), and the
    /// health checks, which a kubelet or a load balancer probes without one and which tell nothing
    /// beyond their status.
    static let publicPages: Set<String> = ["/", "/selftest", "/healthz", "/readyz"]

    func notFound(_ message: String) -> Response {
        json(["error": message], status: .notFound)
    }
}

public struct AdminError: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// `Authorization: Bearer <admin.token>` on every route; anything else gets 401 and nothing more.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    /// SHA-256 of the token: what a presented token's digest is compared with.
    let digest: TokenDigest

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.method == .get, AdminServer.publicPages.contains(request.uri.path) {
            return try await next(request, context)
        }
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer "),
              matches(Array(header.utf8.dropFirst(7))) else {
            return Response(status: .unauthorized,
                            headers: [.wwwAuthenticate: "Bearer realm=\"tern-admin\"", .contentType: "application/json"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"error":"unauthorized"}"#)))
        }
        return try await next(request, context)
    }

    /// Compares SHA-256 digests of equal length with OpenSSL's CRYPTO_memcmp: no early exit, so the
    /// time taken tells nothing about how much of a guess matched, and no truncation of the length
    /// (a token followed by any number of extra bytes has another digest).
    func matches(_ presented: [UInt8]) -> Bool {
        let presentedDigest = Digest.sha256(presented)
        let tokenDigest = digest.current
        guard presentedDigest.count == tokenDigest.count, presentedDigest.count == 32 else { return false }
        return presentedDigest.withUnsafeBytes { a in tokenDigest.withUnsafeBytes { b in constantTimeEqual(a, b) } }
    }
}

/// The SHA-256 of the admin token, replaceable while requests read it.
final class TokenDigest: @unchecked Sendable {
    private let lock = NSLock()
    private var value: [UInt8]

    init(_ token: String) { value = Digest.sha256(Array(token.utf8)) }

    var current: [UInt8] { lock.withLock { value } }

    func replace(with token: String) {
        let d = Digest.sha256(Array(token.utf8))
        lock.withLock { value = d }
    }
}
