import SubspaceCore
import SubspaceModels
import SubspaceData
import SubspaceOptim

/// Memory a training run needs, planned from the model's shape and the optimizer's own
/// description of its state, without building either.
///
/// - **Weights**: every tensor once, trainable or frozen (a tied head is the embedding), in `dtype`;
///   gradients and optimizer state only for the trainable ones.
/// - **Gradients**: the full set, or with the per-layer update the largest single gradient
///   (the trainer steps and frees each gradient as soon as it is complete, so at most one is
///   resident; GaLore's layer-wise trick); none for a forward-only step rule.
/// - **Optimizer states** and **projectors**: the optimizer is built through
///   `OptimizerRegistry` with the given options, each parameter is routed by the real
///   `RoutedOptimizer` and its rule's `stateFootprint(for:)` gives the tensors it keeps after
///   a step. Float states are priced by `stateStorage` (dtype, or bitsandbytes' 8-bit
///   blocks), float projectors in `dtype` (GaLore's 8-bit runs keep P in bf16); tensors the
///   rule itself stores quantized keep their size.
/// - **Activations**: `ActivationMemory` (the engine's allocation formula), in `dtype`, by
///   step rule: the training arena for backprop, the inference arena for forward-only rules.
///
/// - **Runtime**: the resident set of the process before any of the above exists (Swift
///   runtime, Foundation, OpenBLAS and its thread buffers), given by the caller:
///   `subspace memory` measures its own resident set, which is the same binary as `train`
///   (about 25 MiB on Linux). Zero by default, so library callers price the tensors alone.
///
/// Not counted: the token batch and transient temporaries inside a step (attention scratch,
/// GEMM packing, an optimizer's projected gradient), 3-6% of peak RSS on `tiny` and
/// `llama20m`. The README's memory-planner section compares the total with peak RSS.
public struct MemoryPlan: Equatable, Sendable {
    /// What to plan for.
    public struct Request: Equatable, Sendable {
        public var config: LlamaConfig
        /// An `OptimizerRegistry` name.
        public var optimizer: String
        public var options: OptimizerOptions
        public var dtype: MemoryDType
        public var stateStorage: StateStorage
        public var perLayerUpdate: Bool
        public var batch: Int
        public var seq: Int
        public var activationCheckpointing: Bool
        /// The step rule's memory regime: backprop (training arena, gradients) or forward
        /// only (inference arena, no gradients).
        public var rule: StepRuleMemory
        /// Resident bytes of the process itself, added to the total (see the type's notes).
        public var runtimeBytes: Int
        /// Adapters or a low-rank parametrization in the slots (nil: dense): their factors
        /// are priced as trainable tensors, a frozen base as weights only, their own saved
        /// activations with the arena.
        public var adapter: AdapterSettings?
        /// The step rule, when known: sets `rule` to its regime and prices its own state
        /// (`StepRuleName.stateElements`); a zeroth-order rule's `.sgd` update keeps no
        /// optimizer state.
        public var stepRule: StepRuleName?
        public var zerothOrder: ZerothOrderSettings
        /// The precision of the linear products (`--precision`): bf16 adds the transient
        /// bf16 operand copies (`mixedPrecisionBytes`); weights, gradients, states and
        /// activations keep `dtype`.
        public var precision: MatmulPrecision = .fp32

        public init(
            config: LlamaConfig, optimizer: String, options: OptimizerOptions = OptimizerOptions(),
            dtype: MemoryDType = .fp32, stateStorage: StateStorage = .full, perLayerUpdate: Bool = false,
            batch: Int = 8, seq: Int? = nil, activationCheckpointing: Bool = false, rule: StepRuleMemory = .backprop,
            runtimeBytes: Int = 0, adapter: AdapterSettings? = nil, stepRule: StepRuleName? = nil,
            zerothOrder: ZerothOrderSettings = ZerothOrderSettings()
        ) {
            self.adapter = adapter
            self.config = config; self.optimizer = optimizer; self.options = options; self.dtype = dtype
            self.stateStorage = stateStorage; self.perLayerUpdate = perLayerUpdate; self.batch = batch
            self.seq = seq ?? min(256, config.maxSeq); self.activationCheckpointing = activationCheckpointing
            self.rule = stepRule?.memory ?? rule; self.runtimeBytes = runtimeBytes
            self.stepRule = stepRule; self.zerothOrder = zerothOrder
        }
    }

    /// One rule's share of the optimizer memory (a `RoutedOptimizer` route or its fallback).
    public struct RuleShare: Equatable, Sendable {
        public var rule: String
        public var parameters: Int
        public var elements: Int
        public var stateBytes: Int
        public var projectorBytes: Int
    }

    public let request: Request
    /// Trainable parameters (elements).
    public let parameters: Int
    public let weightsBytes: Int
    public let gradientsBytes: Int
    public let optimizerStateBytes: Int
    public let projectorBytes: Int
    public let activationsBytes: Int
    /// The step rule's own state between steps (LOZO's V and N, SubZero's U and V), in `dtype`.
    public let stepRuleStateBytes: Int
    /// Per rule, in the order the rules first own a parameter.
    public let rules: [RuleShare]
    /// bf16 copies of one product's operands under `--precision bf16`
    /// (`LlamaArchitecture.mixedPrecisionBytes`); 0 in fp32.
    public let mixedPrecisionBytes: Int

    /// The process's own resident bytes (`Request.runtimeBytes`).
    public var runtimeBytes: Int { request.runtimeBytes }

    public var totalBytes: Int {
        weightsBytes + gradientsBytes + optimizerStateBytes + projectorBytes + activationsBytes + stepRuleStateBytes
            + mixedPrecisionBytes + runtimeBytes
    }

    /// Plans `request`.
    /// - Throws: `ConfigurationError` for an impossible model, batch shape or optimizer
    ///   option, or when a rule the optimizer routes to does not describe its state by shape.
    public init(_ request: Request) throws {
        let c = request.config, dtype = request.dtype
        try c.validate()
        try c.validate(batch: request.batch, seq: request.seq)
        if request.runtimeBytes < 0 || request.runtimeBytes > 1 << 50 {
            throw ConfigurationError("runtime bytes must be between 0 and 2^50, got \(request.runtimeBytes)")
        }
        let optimizer = try OptimizerRegistry.make(request.optimizer, options: request.options)
        // bf16 moments are priced by the rules' own footprints (2 bytes per element).
        if case .blockwise8Bit = request.stateStorage, optimizer.statePrecision == .bf16 {
            throw ConfigurationError("--state-bits 8 and --state-precision bf16 contradict each other; give one")
        }
        try request.adapter?.validate(for: c)
        let architecture = LlamaArchitecture(config: c, operators: try request.adapter?.operators() ?? .dense)
        let all = architecture.parameterSpecs
        // Frozen tensors (an adapter's base) cost their weights only: no gradient, no state.
        let specs = all.filter(\.trainable)
        let stepRule = request.stepRule ?? .backprop
        if stepRule.isZerothOrder { try request.zerothOrder.validate(for: stepRule) }
        let optimizerHolds = stepRule.usesOptimizerState(request.zerothOrder)

        var shares: [RuleShare] = [], index: [ObjectIdentifier: Int] = [:], silent: [String] = []
        for p in specs where optimizerHolds {
            let rule = optimizer.optimizer(for: p)
            guard let footprint = rule.stateFootprint(for: p) else {
                if !silent.contains(rule.name) { silent.append(rule.name) }
                continue
            }
            let id = ObjectIdentifier(rule)
            if index[id] == nil {
                index[id] = shares.count
                shares.append(RuleShare(rule: rule.name, parameters: 0, elements: 0, stateBytes: 0, projectorBytes: 0))
            }
            let i = index[id]!
            shares[i].parameters += 1
            shares[i].elements += p.count
            shares[i].stateBytes += footprint.states.reduce(0) { $0 + request.stateStorage.bytes($1, dtype: dtype) }
            shares[i].projectorBytes += footprint.projectors.reduce(0) {
                $0 + ($1.storage == .float ? $1.elements * dtype.bytesPerElement : $1.bytes)
            }
        }
        if !silent.isEmpty {
            throw ConfigurationError(
                "cannot plan '\(request.optimizer)': its rule \(silent.joined(separator: ", ")) does not describe its state by shape (stateFootprint)")
        }

        self.request = request
        parameters = specs.reduce(0) { $0 + $1.count }
        weightsBytes = all.reduce(0) { $0 + $1.count } * dtype.bytesPerElement
        switch request.rule {
        case .forwardOnly: gradientsBytes = 0
        case .backprop:
            gradientsBytes = request.perLayerUpdate
                ? (specs.map(\.count).max() ?? 0) * dtype.bytesPerElement
                : parameters * dtype.bytesPerElement
        }
        optimizerStateBytes = shares.reduce(0) { $0 + $1.stateBytes }
        projectorBytes = shares.reduce(0) { $0 + $1.projectorBytes }
        let members = request.stepRule?.populationMembers(
            architecture: architecture, batch: request.batch, seq: request.seq, settings: request.zerothOrder) ?? 1
        activationsBytes = ActivationMemory.bytes(
            architecture: architecture, batch: members * request.batch, seq: request.seq, checkpointing: request.activationCheckpointing,
            dtype: dtype, rule: request.rule, precision: request.precision)
        rules = shares
        mixedPrecisionBytes = architecture.mixedPrecisionBytes(batch: request.batch, seq: request.seq, precision: request.precision)
        stepRuleStateBytes = stepRule.stateElements(shapes: specs.map(\.shape), settings: request.zerothOrder) * dtype.bytesPerElement
    }
}

extension MemoryPlan {
    /// The figures of `subspace memory --json`, in snake case.
    public struct Summary: Codable, Equatable, Sendable {
        public var model: String
        public var optimizer: String
        public var params: Int
        public var dtype: String
        public var state_bits: Int
        public var per_layer_update: Bool
        public var batch: Int
        public var seq: Int
        public var activation_checkpointing: Bool
        public var weights_bytes: Int
        public var gradients_bytes: Int
        public var optimizer_state_bytes: Int
        public var projector_bytes: Int
        public var activations_bytes: Int
        /// The step rule's state (`stepRuleStateBytes`); nil (omitted) for backprop.
        public var step_rule_state_bytes: Int?
        /// `--precision bf16`'s operand copies (`mixedPrecisionBytes`); nil (omitted) in fp32.
        public var mixed_precision_bytes: Int? = nil
        /// `--state-precision` when not fp32 (nil, omitted, otherwise).
        public var state_precision: String? = nil
        public var runtime_bytes: Int
        public var total_bytes: Int
    }

    /// This plan as `Summary`, naming the model `model`.
    public func summary(model: String) -> Summary {
        let r = request
        let bits: Int
        switch r.stateStorage {
        case .full: bits = 32
        case .blockwise8Bit: bits = 8
        }
        return Summary(
            model: model, optimizer: r.optimizer, params: parameters, dtype: r.dtype.rawValue, state_bits: bits,
            per_layer_update: r.perLayerUpdate, batch: r.batch, seq: r.seq,
            activation_checkpointing: r.activationCheckpointing, weights_bytes: weightsBytes,
            gradients_bytes: gradientsBytes, optimizer_state_bytes: optimizerStateBytes, projector_bytes: projectorBytes,
            activations_bytes: activationsBytes,
            step_rule_state_bytes: (r.stepRule ?? .backprop).isZerothOrder ? stepRuleStateBytes : nil,
            mixed_precision_bytes: r.precision == .bf16 ? mixedPrecisionBytes : nil,
            state_precision: (try? r.options.resolvedStatePrecision()) == .bf16 ? StatePrecision.bf16.rawValue : nil,
            runtime_bytes: runtimeBytes, total_bytes: totalBytes)
    }
}
