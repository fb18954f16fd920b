import TernFuzzing

/// libFuzzer target for FuzzTargets.frame (Sources/TernFuzzing/FuzzTargets.swift). SwiftPM links an
/// executable's entry point as `<module>_main`, so instead of libFuzzer's own `main` this one
/// hands the arguments to LLVMFuzzerRunDriver (libFuzzer's documented driver entry).
@_cdecl("fuzz_frame_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var count = argc
    var values = argv
    return LLVMFuzzerRunDriver(&count, &values) { data, size in
        FuzzTargets.frame(UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size))
        return 0
    }
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32
