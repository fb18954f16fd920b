// swift-tools-version: 6.1
import PackageDescription

// libFuzzer targets (swiftc -sanitize=fuzzer), one executable each. Built and run by Fuzz/run.sh,
// which CI calls with a time budget per target; the bodies live in the main package's TernFuzzing
// library so that the test suite replays Fuzz/Corpus and Fuzz/Regressions through the same code.
let parseAsLibrary: [SwiftSetting] = [.unsafeFlags(["-parse-as-library"])]
let package = Package(
    name: "tern-fuzz",
    dependencies: [.package(name: "tern", path: "..")],
    targets: [
        .target(name: "FuzzDriver", path: "Targets/Driver"),
        .executableTarget(name: "fuzz-decode", dependencies: ["FuzzDriver", .product(name: "TernFuzzing", package: "tern")],
                          path: "Targets/Decode", swiftSettings: parseAsLibrary),
        .executableTarget(name: "fuzz-frame", dependencies: ["FuzzDriver", .product(name: "TernFuzzing", package: "tern")],
                          path: "Targets/Frame", swiftSettings: parseAsLibrary),
        .executableTarget(name: "fuzz-handle", dependencies: ["FuzzDriver", .product(name: "TernFuzzing", package: "tern")],
                          path: "Targets/Handle", swiftSettings: parseAsLibrary),
        .executableTarget(name: "fuzz-proxy", dependencies: ["FuzzDriver", .product(name: "TernFuzzing", package: "tern")],
                          path: "Targets/Proxy", swiftSettings: parseAsLibrary),
    ]
)
