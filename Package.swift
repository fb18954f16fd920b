// swift-tools-version: 6.1
import PackageDescription

// Layers point inwards only (see "Layout" in README.md):
//   STUN (codec, no I/O)  <-  TernCore (server logic, no sockets)  <-  TernIO (event loop)  <-  tern (CLI)
let package = Package(
    name: "tern",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "tern", targets: ["tern"]),
        // For the benchmark package (Benchmarks/): the codec, the server logic and the C shims.
        .library(name: "STUN", targets: ["STUN"]),
        .library(name: "TernCore", targets: ["TernCore"]),
        .library(name: "TernShims", targets: ["CTernShims"]),
        // For the libFuzzer package (Fuzz/): the fuzz targets' bodies.
        .library(name: "TernFuzzing", targets: ["TernFuzzing"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.3.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // C: OpenSSL (HMAC/MD5/SHA, TLS and DTLS) through pkg-config.
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // C: libsystemd (sd_notify, socket activation).
        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        // C: what Swift's Glibc module does not expose (mmsghdr, recvmmsg/sendmmsg, cmsg helpers, OpenSSL macros).
        .target(name: "CTernShims"),
        // C: the kernel fast path (`io.offload`). `bpf/` holds the TC classifier, compiled for
        // clang's BPF target by the BPFObject plugin (never by this target); the rest is its loader
        // over libbpf (Debian's libbpf-dev).
        .target(
            name: "CTernBPF",
            exclude: ["bpf"],
            linkerSettings: [.linkedLibrary("bpf")]
        ),
        // Builds Sources/CTernBPF/bpf/tern_relay.bpf.c into a BPF object and embeds it in TernIO.
        .plugin(name: "BPFObject", capability: .buildTool()),

        // The STUN/TURN wire codec: value types, no I/O, no Foundation.
        .target(name: "STUN", dependencies: ["COpenSSL"]),

        // The server's brain: request handling, config model. No sockets.
        .target(
            name: "TernCore",
            dependencies: [
                "STUN",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Atomics", package: "swift-atomics"),
            ]
        ),

        // The event loop: POSIX wrappers, workers on Dispatch sources, UDP/TCP/TLS/DTLS listeners and relays.
        .target(
            name: "TernIO",
            dependencies: [
                "STUN", "TernCore", "CTernShims", "COpenSSL", "CTernBPF",
                .product(name: "Logging", package: "swift-log"),
            ],
            plugins: ["BPFObject"]
        ),

        // The admin HTTP endpoint (Hummingbird 2) and Prometheus rendering. Reads snapshots through
        // `AdminBackend`; never touches a worker.
        .target(
            name: "TernAdmin",
            dependencies: [
                "TernCore",
                "STUN",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        .executableTarget(
            name: "tern",
            dependencies: [
                "STUN", "TernCore", "TernIO", "TernAdmin", "CSystemd",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // The bodies of the libFuzzer targets (Fuzz/) and an in-memory RelayIO for them; the test
        // suite replays the committed corpus through the same code.
        .target(name: "TernFuzzing", dependencies: ["STUN", "TernCore"]),

        .testTarget(name: "STUNTests", dependencies: ["STUN"]),
        .testTarget(name: "TernCoreTests", dependencies: ["TernCore", "STUN", "TernFuzzing"]),
        // Real sockets against a real Server, and the admin endpoint on top of it.
        .testTarget(
            name: "TernIOTests",
            dependencies: [
                "TernIO", "TernCore", "TernAdmin", "STUN", "CTernShims", "COpenSSL",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
        .testTarget(name: "InteropTests", dependencies: ["TernIO", "TernCore", "STUN"]),
        // The executable's own pieces (reading the config file), through `@testable import tern`.
        .testTarget(name: "ternTests", dependencies: ["tern", "TernCore", "STUN"]),
    ],
    swiftLanguageModes: [.v5]
)
