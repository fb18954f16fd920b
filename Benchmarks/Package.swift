// swift-tools-version: 6.1
import PackageDescription

// The benchmark: a load generator (tern-load), a bare recvmmsg->sendmmsg forwarder (the ceiling),
// and an ordo-one/benchmark micro-benchmark of the hot path. Run everything with
// `Benchmarks/run.sh` (see BENCHMARKS.md). Kept out of the main package so that its build and CI
// do not carry the benchmark's dependencies.
let package = Package(
    name: "tern-benchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "tern", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .executableTarget(
            name: "tern-load",
            dependencies: [
                .product(name: "STUN", package: "tern"),
                .product(name: "TernShims", package: "tern"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/TernLoad"
        ),
        .executableTarget(name: "bare-forwarder", path: "Sources/BareForwarder"),
        .executableTarget(
            name: "HotPath",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "STUN", package: "tern"),
                .product(name: "TernCore", package: "tern"),
            ],
            path: "Benchmarks/HotPath",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
