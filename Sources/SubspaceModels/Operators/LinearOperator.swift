import SubspaceCore

/// Linear slots as operators: the seven matrices of a LLaMA block (`q_proj` ... `down_proj`)
/// are places that hold a `LinearOperator`, not dense weights the model multiplies itself.
///
/// The model owns the activations around a slot (its input and output live in the
/// activation arena) and decides when each half of the backward pass runs; the operator
/// owns its parameters and anything it must remember between forward and backward beyond
/// its input (a LoRA operator's `x A^T`, say). This is llm.c's paired `_forward`/`_backward`
/// over raw buffers, with the layer swap of mlx-swift's `@ModuleInfo(key: "q_proj")` and
/// `LoRALinear` (a slot's operator is replaced at construction; the model file is unchanged).
///
/// Three pieces:
/// - `LinearSlotSpec`: where a slot is and its shape, with no storage (what the planner and
///   the checkpoint names need);
/// - `LinearOperatorKind`: a family of operators (dense, frozen base plus factors, tensor
///   train, ...) that describes its parameters and saved activations for a slot by shape
///   alone, and builds the operator;
/// - `LinearOperator`: the running map, held by a `LinearSlot` together with observers.

// MARK: - Where a slot is

/// A linear slot of the decoder by position and shape: `y[N, out] = A(x[N, in])`.
public struct LinearSlotSpec: Hashable, Sendable, CustomStringConvertible {
    /// The slot's Hugging Face module name: `q_proj`, `k_proj`, `v_proj`, `o_proj`,
    /// `gate_proj`, `up_proj` or `down_proj`.
    public let name: String
    /// The sub-module it belongs to: `self_attn` or `mlp`.
    public let module: String
    /// Decoder layer index.
    public let layer: Int
    public let inFeatures: Int
    public let outFeatures: Int
    /// The role its parameters get (routing sends `.attention` and `.mlp` matrices to the
    /// memory-efficient optimizers).
    public let role: ParameterRole

    public init(name: String, module: String, layer: Int, inFeatures: Int, outFeatures: Int, role: ParameterRole) {
        self.name = name; self.module = module; self.layer = layer
        self.inFeatures = inFeatures; self.outFeatures = outFeatures; self.role = role
    }

    /// The Hugging Face module path, e.g. `model.layers.3.self_attn.q_proj`; parameter names
    /// append `.weight`, `.lora_A.weight`, ...
    public var path: String { "model.layers.\(layer).\(module).\(name)" }

    public var description: String { "\(path) [\(outFeatures), \(inFeatures)]" }
}

// MARK: - The running operator

/// Whether a forward pass will be followed by a backward pass.
public enum ForwardMode: Sendable {
    /// Keep what backward needs (the training arena).
    case training
    /// Forward only (eval, sampling, forward-only step rules): keep nothing, and reuse one
    /// layer's scratch across layers.
    case inference
}

/// A linear map from `inFeatures` to `outFeatures` over rows of tokens, with its own
/// backward pass. Row-major buffers throughout: x is `[rows, in]`, y and dy `[rows, out]`.
///
/// The model calls, per layer and micro-batch: `forward` once, then `backwardInput` and
/// `accumulateGradients` once each, in an order the model chooses (the down projection
/// forms its weight gradient first, because its input gradient overwrites the input's
/// buffer). `accumulateGradients` receives the same input the forward saw (the model keeps
/// or recomputes it bit for bit), so an operator needs to save only what is not its input.
/// Neither backward call may assume the other has run.
///
/// Class-bound: operators hold parameters (reference types) and may keep per-batch buffers.
public protocol LinearOperator: AnyObject {
    var inFeatures: Int { get }
    var outFeatures: Int { get }
    /// Every tensor the operator holds, trainable or frozen (`requiresGrad == false`), with
    /// Hugging Face names under the slot's path, in the order checkpoints list them. The
    /// model's `parameters` is the concatenation of these in slot order.
    var parameters: [Parameter] { get }
    /// `y = A(x)`, or `y += A(x)` when `accumulate` (the model adds o_proj and down_proj
    /// straight into the residual stream).
    func forward(
        _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool, mode: ForwardMode)
    /// `dx = A^T(dy)`, or `dx += A^T(dy)` when `accumulate`.
    func backwardInput(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool)
    /// Adds this micro-batch's share to the gradient of every trainable parameter (created
    /// on first use with `Parameter.gradient()`); frozen ones are skipped.
    func accumulateGradients(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int)
    /// Float32 bytes of activations the operator keeps itself (0 for dense).
    var activationBytes: Int { get }
    /// Frees whatever `activationBytes` counts.
    func releaseActivations()
    /// The element type of the operator's matrix products (`LlamaModel.precision` sets it on
    /// every slot). Operators that do not implement it run fp32 whatever is asked.
    var precision: MatmulPrecision { get set }
}

extension LinearOperator {
    public var activationBytes: Int { 0 }
    public func releaseActivations() {}
    public var precision: MatmulPrecision {
        get { .fp32 }
        set {}
    }
}

// MARK: - A family of operators, by shape alone

/// Describes and builds the operator of a slot. The memory planner and
/// `LlamaConfig.parameterSpecs` use the description; `LlamaModel` the builder; both read the
/// same kind, so the planner prices exactly what the model allocates.
public protocol LinearOperatorKind: Sendable {
    /// A short name for reports (`dense`, `lora`, ...).
    var name: String { get }
    /// The parameters `make` will create for `slot`, in the same order and with the same
    /// names, roles and shapes.
    func parameterSpecs(for slot: LinearSlotSpec) -> [ParameterSpec]
    /// Float32 bytes the operator keeps for a pass over `rows` tokens in `mode`.
    func activationBytes(for slot: LinearSlotSpec, rows: Int, mode: ForwardMode) -> Int
    /// Builds the operator, drawing initial values from `initializer`.
    func make(for slot: LinearSlotSpec, initializer: ParameterInitializer) throws -> any LinearOperator
}

extension LinearOperatorKind {
    public func activationBytes(for slot: LinearSlotSpec, rows: Int, mode: ForwardMode) -> Int { 0 }
}

/// Which operator kind each slot of a model gets. Dense everywhere by default; replace
/// slots by path or by predicate:
///
/// ```swift
/// let ops = LinearOperators.dense.replacing(["model.layers.1.self_attn.q_proj"], with: MyLoRA(rank: 4))
/// let model = try LlamaModel(config: c, operators: ops)
/// ```
public struct LinearOperators: Sendable {
    /// The kind of a slot.
    public let kind: @Sendable (LinearSlotSpec) -> any LinearOperatorKind
    /// True when every slot is dense: shape-only figures then need not visit each slot (the
    /// planner prices absurd shapes, with millions of layers, before validating them).
    public let allDense: Bool
    /// Whether the tensors outside the slots (embedding, norm gains, LM head) train. False in
    /// a PEFT-style fine-tune, where only the adapters' factors do (`freezingOthers()`).
    public let othersTrainable: Bool
    /// CoMERA's TTM embedding in place of the dense table (nil: the table).
    public let embedding: TensorTrainEmbedding.Kind?

    public init(_ kind: @escaping @Sendable (LinearSlotSpec) -> any LinearOperatorKind) {
        self.init(kind, allDense: false, othersTrainable: true)
    }

    private init(_ kind: @escaping @Sendable (LinearSlotSpec) -> any LinearOperatorKind, allDense: Bool, othersTrainable: Bool, embedding: TensorTrainEmbedding.Kind? = nil) {
        self.kind = kind
        self.allDense = allDense
        self.othersTrainable = othersTrainable
        self.embedding = embedding
    }

    /// These choices with the embedding a TTM (`TensorTrainEmbedding`), or the dense table for nil.
    public func withEmbedding(_ e: TensorTrainEmbedding.Kind?) -> LinearOperators {
        LinearOperators(kind, allDense: allDense, othersTrainable: othersTrainable, embedding: e)
    }

    /// Dense weights in every slot: the model as Hugging Face's `LlamaForCausalLM`.
    public static let dense = LinearOperators({ _ in DenseLinear.Kind() }, allDense: true, othersTrainable: true)

    /// These choices, except that slots matching `predicate` get `kind`.
    public func replacing(where predicate: @escaping @Sendable (LinearSlotSpec) -> Bool, with kind: any LinearOperatorKind) -> LinearOperators {
        let base = self.kind
        return LinearOperators({ predicate($0) ? kind : base($0) }, allDense: false, othersTrainable: othersTrainable, embedding: embedding)
    }

    /// These choices with every dense slot and every tensor outside the slots frozen, so
    /// that only the replaced slots' own trainable tensors train (PEFT's default: nothing
    /// but the adapters, `modules_to_save` empty).
    public func freezingOthers() -> LinearOperators {
        let base = self.kind
        return LinearOperators({ slot in
            let k = base(slot)
            return k is DenseLinear.Kind ? DenseLinear.Kind(trainable: false) : k
        }, allDense: false, othersTrainable: false, embedding: embedding)
    }

    /// These choices, except that the slots with these module paths
    /// (`model.layers.1.self_attn.q_proj`) get `kind`.
    public func replacing(_ paths: Set<String>, with kind: any LinearOperatorKind) -> LinearOperators {
        replacing(where: { paths.contains($0.path) }, with: kind)
    }
}

/// Initial values for new parameters, as Hugging Face initialises LLaMA: each tensor draws
/// from its own stream `RandomStream(seed).split(name)`, so values do not depend on the
/// order in which parameters are created (and a replaced slot leaves every other
/// parameter's initial value as it was).
public struct ParameterInitializer: Sendable {
    public let root: RandomStream
    /// `LlamaConfig.initStd`.
    public let std: Float

    public init(seed: UInt64, std: Float) { root = RandomStream(seed: seed); self.std = std }

    /// A parameter from N(0, std^2) (`std` defaults to the model's), trainable or frozen as
    /// `spec` says.
    public func normal(_ spec: ParameterSpec, std: Float? = nil) -> Parameter {
        let t = Tensor(uninitialized: spec.shape)
        var rng = root.split(spec.name)
        rng.fillNormal(t, std: std ?? self.std)
        return Parameter(spec, value: t)
    }

    /// A parameter filled with `value` (norm gains: 1; LoRA's B: 0).
    public func constant(_ spec: ParameterSpec, _ value: Float) -> Parameter {
        Parameter(spec, value: Tensor(shape: spec.shape, repeating: value))
    }
}

// MARK: - The slot at run time

/// A read-only view of a `[rows, columns]` row-major buffer, valid only during the
/// observer call that receives it (no copy is made).
public struct ActivationView {
    public let data: UnsafePointer<Float>
    public let rows: Int
    public let columns: Int
}

/// Sees a slot's input (forward) or output gradient (backward) in place; for Kronecker-factor
/// statistics (K-FAC, MKOR: `x^T x` and `dy^T dy` per layer) and diagnostics.
public typealias LinearObserver = (LinearSlotSpec, ActivationView) -> Void

/// A slot of a built model: its spec, its operator, and optional observers.
///
/// The model calls the slot, which fires the observers and delegates to the operator, so
/// observers work whatever the operator. `inputObserver` fires on training forwards only
/// (evaluation and sampling would skew running statistics), unless `observesForwardOnly` is
/// set (statistics gathered without training: Perfusion's input covariance, from
/// `model.loss` over a corpus); `outputGradientObserver` fires
/// once per micro-batch, when dL/dy is complete, before the operator's backward calls.
public final class LinearSlot {
    public let spec: LinearSlotSpec
    public let op: any LinearOperator
    public var inputObserver: LinearObserver?
    public var outputGradientObserver: LinearObserver?
    /// When true, `inputObserver` also fires on forward-only passes (`model.loss`, `logits`).
    public var observesForwardOnly = false
    /// The population being evaluated, during `LlamaModel.populationLoss` only: its
    /// per-member delta of this slot's dense weight is added to each member's rows.
    var population: PopulationLayout?

    init(spec: LinearSlotSpec, op: any LinearOperator) throws {
        guard op.inFeatures == spec.inFeatures, op.outFeatures == spec.outFeatures else {
            throw ConfigurationError(
                "the operator for \(spec.path) maps \(op.inFeatures) -> \(op.outFeatures) features; the slot needs \(spec.inFeatures) -> \(spec.outFeatures)")
        }
        self.spec = spec
        self.op = op
    }

    @inline(__always)
    func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool = false, mode: ForwardMode) {
        if mode == .training || observesForwardOnly, let inputObserver {
            inputObserver(spec, ActivationView(data: x, rows: rows, columns: spec.inFeatures))
        }
        op.forward(x, y, rows: rows, accumulate: accumulate, mode: mode)
        population?.addLowRank(spec.path + ".weight", x: x, y: y, rows: 0..<rows, inFeatures: spec.inFeatures, outFeatures: spec.outFeatures)
    }

    /// Fires `outputGradientObserver` on dy (once per micro-batch, before the backward calls).
    @inline(__always)
    func observeOutputGradient(_ dy: UnsafePointer<Float>, rows: Int) {
        outputGradientObserver?(spec, ActivationView(data: dy, rows: rows, columns: spec.outFeatures))
    }

    @inline(__always)
    func backwardInput(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool = false) {
        op.backwardInput(dy, dx, rows: rows, accumulate: accumulate)
    }

    @inline(__always)
    func accumulateGradients(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int) {
        op.accumulateGradients(dy: dy, x: x, rows: rows)
    }
}
