import SubspaceCore

/// An operator whose map is a dense matrix that can be read out: what `subspace merge`
/// writes and what a new adapter run starting from this model sees.
public protocol DenseMappable: LinearOperator {
    /// The effective weight `[out, in]` of the map (`y = x W^T`), as a new tensor.
    func denseWeight() -> Tensor
}

/// An operator around a dense base weight `[out, in]` (a frozen one for adapters): the
/// tensor `--init-from` fills with the starting model's weight.
public protocol DenseBased: LinearOperator {
    var base: Parameter { get }
}

extension DenseLinear: DenseMappable, DenseBased {
    public var base: Parameter { weight }
    public func denseWeight() -> Tensor { weight.value.copy() }
}

extension LoRALinear: DenseMappable, DenseBased {}

extension LlamaModel {
    /// The model as a plain Hugging Face LLaMA: every tensor outside the slots, and each
    /// slot's effective dense weight under `<slot path>.weight`, in `named_parameters()`
    /// order (adapters merged, low-rank factors multiplied out; the model is not changed).
    /// - Throws: `ConfigurationError` when a slot's operator cannot be read out densely.
    public func denseWeights() throws -> [(name: String, value: Tensor)] {
        var out: [(name: String, value: Tensor)] = []
        var done = Set<String>()
        let slotOf = Dictionary(uniqueKeysWithValues: slots.map { ($0.spec.path, $0) })
        for p in parameters {
            if let slot = slotOf.first(where: { p.name.hasPrefix($0.key + ".") })?.value {
                guard !done.contains(slot.spec.path) else { continue }
                done.insert(slot.spec.path)
                guard let op = slot.op as? any DenseMappable else {
                    throw ConfigurationError("the operator of \(slot.spec.path) has no dense form")
                }
                out.append((slot.spec.path + ".weight", op.denseWeight()))
            } else if p.name.hasPrefix(TensorTrainEmbedding.prefix) {
                // The TTM embedding's cores, gates and masks become the one dense table.
                guard let e = tensorEmbedding, !done.contains(TensorTrainEmbedding.prefix) else { continue }
                done.insert(TensorTrainEmbedding.prefix)
                out.append((LlamaArchitecture.embeddingName, e.denseTable()))
            } else {
                out.append((p.name, p.value))
            }
        }
        return out
    }

    /// Starts this model from `source`'s function: every tensor outside the slots copied by
    /// name, and each slot's base set to the source slot's effective dense weight (so a new
    /// adapter on a model that had one starts from the merged model).
    /// - Throws: `ConfigurationError` when the configurations differ, a source slot has no
    ///   dense form, or a slot here has no dense base to fill (a low-rank parametrization
    ///   starts from scratch, not from dense weights).
    public func loadDense(from source: LlamaModel) throws {
        guard source.config == config else { throw ConfigurationError("the starting model's configuration differs from the run's") }
        if tensorEmbedding != nil { throw ConfigurationError("a TT embedding cannot start from dense weights (it trains from scratch)") }
        let dense = Dictionary(uniqueKeysWithValues: try source.denseWeights().map { ($0.name, $0.value) })
        let slotPaths = Set(slots.map(\.spec.path))
        for slot in slots {
            guard let op = slot.op as? any DenseBased else {
                throw ConfigurationError("the \(architecture.operators.kind(slot.spec).name) operator of \(slot.spec.path) cannot start from dense weights")
            }
            op.base.value.assign(dense[slot.spec.path + ".weight"]!)
        }
        for p in parameters where !slotPaths.contains(where: { p.name.hasPrefix($0 + ".") }) {
            guard let t = dense[p.name] else { throw ConfigurationError("the starting model has no tensor '\(p.name)'") }
            p.value.assign(t)
        }
    }
}
