import SubspaceCore

/// An operator that is a linear map with an effective dense weight W `[out, in]`:
/// `forward(x) = x W^T`. `subspace merge` writes W as the slot's plain `<path>.weight`.
public protocol DenseWeightProviding: LinearOperator {
    /// A new tensor holding W (the operator's own tensors are not shared or changed).
    func denseWeight() -> Tensor
}

extension DenseLinear: DenseWeightProviding {
    public func denseWeight() -> Tensor { weight.value.copy() }
}

extension LoRALinear: DenseWeightProviding {
    /// W0 + s B A (W0 alone while merged, where it already holds the sum).
    public func denseWeight() -> Tensor {
        let w = base.value.copy()
        if !isMerged { factors.addProduct(to: w) }
        return w
    }
}

extension LlamaModel {
    /// The effective dense weight of every slot by module path, or nil when some slot's
    /// operator has none.
    public func denseSlotWeights() -> [String: Tensor]? {
        var out: [String: Tensor] = [:]
        for s in slots {
            guard let op = s.op as? any DenseWeightProviding else { return nil }
            out[s.spec.path] = op.denseWeight()
        }
        return out
    }
}
