import SubspaceCore
import SubspaceModels

/// The optimizer state a rule keeps for one parameter, as tensor shapes and storage: what
/// `stateBytes` reports once the parameter has been stepped, known from its description alone.
///
/// Shapes rather than bytes, so that a planner can price float tensors in another element
/// type than the engine's float32 (bf16, or bitsandbytes' 8-bit blocks). Step counts and
/// other Swift scalars are not tensors and are not counted (neither does `stateBytes`); a
/// scalar that `stateBytes` counts (Fira's s_prev) appears as a `[1]` tensor.
public struct StateFootprint: Equatable, Sendable {
    /// How one tensor of the state is stored.
    public enum Storage: Equatable, Sendable {
        /// The engine's float32.
        case float
        /// bfloat16 moments (`--state-precision bf16`, `BFloat16Tensor`): 2 bytes per element.
        case bfloat16
        /// bitsandbytes' block-wise 8 bits (`QuantizedState`) when `StateQuantization`
        /// quantizes a tensor of this size, float32 otherwise (`AdamMomentStorage`'s rule).
        case blockwise8Bit(StateQuantization)
        /// Packed `bits`-bit codes with a float32 scale and a one-byte zero point per group
        /// (`GroupQuantizedTensor`, Q-GaLore's projector).
        case groupQuantized(bits: Int, groupSize: Int)

        /// Bytes of `elements` elements in this storage, from the storage types' own counts.
        public func bytes(elements: Int) -> Int {
            switch self {
            case .float:
                return elements * MemoryLayout<Float>.size
            case .bfloat16:
                return elements * MemoryLayout<UInt16>.size
            case .blockwise8Bit(let q):
                guard q.quantizes(elements) else { return elements * MemoryLayout<Float>.size }
                return QuantizedState.byteCount(elements: elements, blockSize: q.blockSize)
            case .groupQuantized(let bits, let groupSize):
                return GroupQuantizedTensor.byteCount(elements: elements, bits: bits, groupSize: groupSize)
            }
        }
    }

    /// One state tensor.
    public struct Entry: Equatable, Sendable {
        public var shape: [Int]
        public var storage: Storage
        public init(_ shape: [Int], _ storage: Storage = .float) { self.shape = shape; self.storage = storage }
        public var elements: Int { shape.reduce(1, *) }
        /// Bytes as the engine stores it.
        public var bytes: Int { storage.bytes(elements: elements) }
    }

    /// Moments, factored statistics and momentum buffers.
    public var states: [Entry]
    /// Stored projection matrices (the SVD projectors; seeded random projections are
    /// regenerated and store nothing).
    public var projectors: [Entry]

    public init(states: [Entry] = [], projectors: [Entry] = []) {
        self.states = states; self.projectors = projectors
    }

    /// Float32 tensors of these shapes.
    public init(states: [[Int]], projectors: [[Int]] = []) {
        self.init(states: states.map { Entry($0) }, projectors: projectors.map { Entry($0) })
    }

    /// No state at all.
    public static let none = StateFootprint()

    /// Both lists together.
    public static func + (a: StateFootprint, b: StateFootprint) -> StateFootprint {
        StateFootprint(states: a.states + b.states, projectors: a.projectors + b.projectors)
    }

    /// Bytes as the engine stores them: what `stateBytes(for:)` returns after a step.
    public var bytes: Int { (states + projectors).reduce(0) { $0 + $1.bytes } }

    /// One moment entry of `shape` in `precision` (`.float` or `.bfloat16`).
    public static func moment(_ shape: [Int], _ precision: StatePrecision) -> Entry {
        Entry(shape, precision == .bf16 ? .bfloat16 : .float)
    }
}

extension ParameterOptimizer {
    /// Default for rules that do not describe their state by shape: nil ("unknown"), which
    /// the memory planner reports instead of guessing. `ParameterwiseOptimizer` subclasses
    /// override `ParameterwiseOptimizer.stateFootprint(for:)`.
    public func stateFootprint(for parameter: ParameterSpec) -> StateFootprint? { nil }
}
