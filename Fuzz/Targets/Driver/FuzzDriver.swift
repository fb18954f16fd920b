/// libFuzzer's driver for the targets in this package. SwiftPM links an executable's entry point as
/// `<module>_main`, so instead of libFuzzer's own `main` each target's entry hands its arguments to
/// LLVMFuzzerRunDriver (libFuzzer's documented driver entry) through `runFuzzer`.
public func runFuzzer(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                      _ target: @escaping (UnsafeRawBufferPointer) -> Void) -> Int32 {
    currentTarget = target
    var count = argc
    var values = argv
    return LLVMFuzzerRunDriver(&count, &values) { data, size in
        currentTarget(UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size))
        return 0
    }
}

/// The running target (a C callback cannot capture it). Set once, before libFuzzer starts.
nonisolated(unsafe) private var currentTarget: (UnsafeRawBufferPointer) -> Void = { _ in }

@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                                 _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                                 _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32
