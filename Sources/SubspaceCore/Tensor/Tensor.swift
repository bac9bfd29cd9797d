import Foundation

/// A contiguous, row-major Float32 tensor that owns its storage.
///
/// `Tensor` is a reference type on purpose: layers, optimizers and the trainer share buffers
/// without copy-on-write checks in the hot loops, and a buffer is released (the memory goes
/// back to the allocator) as soon as its last reference is dropped. This is what lets the
/// per-layer update mode free each gradient right after its parameter is stepped.
///
/// Storage is 64-byte aligned so that BLAS and the vectorised loops see aligned rows.
public final class Tensor: @unchecked Sendable {
    /// The extent of each dimension, outermost first.
    public let shape: [Int]
    /// Number of elements (the product of `shape`).
    public let count: Int
    /// The storage. Valid for `count` elements while the tensor is alive.
    public let data: UnsafeMutablePointer<Float>

    /// A tensor filled with zeros.
    public init(zeros shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.data = Tensor.allocate(count)
        data.initialize(repeating: 0, count: count)
    }

    /// A tensor filled with `value`.
    public init(shape: [Int], repeating value: Float) {
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.data = Tensor.allocate(count)
        data.initialize(repeating: value, count: count)
    }

    /// A tensor holding a copy of `values` (which must have `shape`'s element count).
    public init(shape: [Int], values: [Float]) {
        let n = shape.reduce(1, *)
        precondition(values.count == n, "\(values.count) values for shape \(shape)")
        self.shape = shape
        self.count = n
        self.data = Tensor.allocate(n)
        values.withUnsafeBufferPointer { data.initialize(from: $0.baseAddress!, count: n) }
    }

    /// An uninitialised tensor: callers must write every element before reading.
    public init(uninitialized shape: [Int]) {
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.data = Tensor.allocate(count)
    }

    deinit { free(data) }

    /// glibc raises its mmap threshold each time a large block is freed, after which large
    /// tensors come from the heap and freed ones stay resident. Pinning the threshold at
    /// 32 KiB makes every tensor from 8,192 floats up its own mapping, returned to the system
    /// when released: that is what lets the per-layer mode's freed gradients lower the peak
    /// RSS. At 1 MiB, GaLore's per-step projected tensors (a few hundred KiB each) fragmented
    /// the heap and cost 15 MB of `llama60m`'s per-layer peak RSS; at glibc's starting 128
    /// KiB, `tiny`'s 64 KiB projectors and projected moments, created on the first step
    /// between that step's temporaries, left 4 MB of holes. The cost is about 65 more
    /// mapping pairs a step for GaLore on `tiny` (none for AdamW), against a 570 ms step.
    private static let pinMmapThreshold: Void = {
        #if os(Linux)
        _ = glibcMallopt(-3 /* M_MMAP_THRESHOLD */, 1 << 15)
        #endif
    }()

    private static func allocate(_ n: Int) -> UnsafeMutablePointer<Float> {
        _ = pinMmapThreshold
        var raw: UnsafeMutableRawPointer?
        let bytes = max(64, n * MemoryLayout<Float>.stride)
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
            fatalError("out of memory allocating \(bytes) bytes")
        }
        return raw.bindMemory(to: Float.self, capacity: max(n, 1))
    }

    /// Bytes held by the storage.
    public var byteCount: Int { count * MemoryLayout<Float>.stride }

    /// Number of rows when viewed as a matrix whose columns are the last dimension.
    public var rows: Int { shape.count <= 1 ? 1 : count / shape[shape.count - 1] }
    /// The last dimension (1 for a scalar).
    public var columns: Int { shape.last ?? 1 }

    public subscript(i: Int) -> Float {
        get { data[i] }
        set { data[i] = newValue }
    }

    /// The elements as an array (a copy).
    public var array: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// A deep copy.
    public func copy() -> Tensor {
        let t = Tensor(uninitialized: shape)
        t.data.update(from: data, count: count)
        return t
    }

    /// Copies `other`'s elements into this tensor (same element count).
    public func assign(_ other: Tensor) {
        precondition(other.count == count, "assign: \(other.shape) into \(shape)")
        data.update(from: other.data, count: count)
    }

    /// Sets every element to zero.
    public func zero() { data.update(repeating: 0, count: count) }

    /// A tensor with the same storage order and a new shape (a copy).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "reshape \(shape) to \(newShape)")
        let t = Tensor(uninitialized: newShape)
        t.data.update(from: data, count: count)
        return t
    }

    /// The transpose of a matrix (a copy).
    public func transposed() -> Tensor {
        precondition(shape.count == 2, "transposed needs a matrix, got \(shape)")
        let r = shape[0], c = shape[1]
        let t = Tensor(uninitialized: [c, r])
        for i in 0..<r { for j in 0..<c { t.data[j * r + i] = data[i * c + j] } }
        return t
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let head = (0..<min(count, 8)).map { String(format: "%.4g", data[$0]) }.joined(separator: ", ")
        return "Tensor\(shape)[\(head)\(count > 8 ? ", ..." : "")]"
    }
}

#if os(Linux)
/// glibc's `mallopt(3)`, which the Glibc module does not export.
@_silgen_name("mallopt") private func glibcMallopt(_ param: Int32, _ value: Int32) -> Int32
#endif
