import Foundation
import SubspaceCore

/// SLTrain (Han et al., NeurIPS 2024, "SLTrain: a sparse plus low-rank approach for
/// parameter and memory efficient pretraining", arXiv 2406.02214): the slot's weight is a
/// scaled low-rank product plus a sparse matrix on a fixed random support,
///
///     W = s B A + S,   s = alpha / r,   S = sum_k v_k e_(o_k) e_(i_k)^T,
///
/// with B, A and the values v trainable and the support {(o_k, i_k)} drawn once: nnz =
/// floor(delta * out * in) distinct positions, uniformly at random (the reference's
/// `randperm(out * in)[:nnz]`, sorted). Initialisation as the reference
/// (`andyjm3/SLTrain`, `splora/splora_linear.py`; the same in
/// `OptimAI-Lab/Memory_Efficient_Pretraining`, `pt_sltrain/splora_model.py`): A
/// Kaiming-uniform (bound 1/sqrt(in)), B zero, values uniform in +-1/sqrt(in), so the
/// model starts as the sparse part alone.
///
/// S is never formed densely: forward y += x S^T, input gradient dx += dy S and value
/// gradient dv_k += sum_n dy[n, o_k] x[n, i_k] are loops over the support, O(rows * nnz),
/// split over rows (forward, input gradient) or entries (value gradient) across the
/// workers, with sums in a fixed order, so results do not depend on the thread count.
/// (The reference's kernels scatter S into a dense copy of B A each pass.)
///
/// The support is a frozen tensor `<path>.sparse_index` `[2, nnz]`: row 0 the output
/// indices o_k, row 1 the input indices i_k, in row-major order, held as float32 (exact
/// below 2^24 = 16.7 M features per side). It is drawn from the slot's own stream
/// `RandomStream(seed).split("<path>.sparse_index")`, so a model rebuilt with the same seed
/// draws it again bit for bit, and, being a parameter, it travels with the weights
/// (checkpoints write every parameter), so restoring the weights restores the support
/// whatever seed the model is rebuilt with; `validateSupport()` checks one read back.
/// The reference keeps a flat int64 buffer `sparse_index` of
/// o_k * in + i_k instead (not exact in float32 above 2^24 elements, hence two rows).
///
/// Names are the reference's: `<path>.lora_A`, `<path>.lora_B`, `<path>.sparse_value`,
/// `<path>.sparse_index`. Refactorization (`Refactorizable`) rebalances B and A only; the
/// sparse values are untouched, as in the reference.
public final class SLTrainLinear: LowRankLinear {
    /// The values v `[nnz]`, trainable.
    public let values: Parameter
    /// The support `[2, nnz]` (output indices, then input indices), frozen.
    public let support: Parameter
    public var nonZeros: Int { values.count }
    override public var parameters: [Parameter] { [a, b, values, support] }

    public init(a: Parameter, b: Parameter, scaling: Float, values: Parameter, support: Parameter) {
        precondition(values.shape.count == 1 && support.shape == [2, values.count], "SLTrain values [nnz] and support [2, nnz]")
        self.values = values
        self.support = support
        support.requiresGrad = false
        super.init(a: a, b: b, scaling: scaling)
    }

    /// Multiply-adds below which a sparse loop is not split across workers.
    static let workGrain = 1 << 16
    /// Rows per worker chunk of the row-parallel sparse loops.
    private var rowGrain: Int { max(1, Self.workGrain / max(values.count, 1)) }

    /// The support as integers: output indices o_k and input indices i_k (read from the
    /// tensor on every pass, O(nnz), so a support loaded from a checkpoint is used as is).
    private func indices() -> (o: [Int], i: [Int]) {
        let nnz = values.count, idx = support.value.data
        return ((0..<nnz).map { Int(idx[$0]) }, (0..<nnz).map { Int(idx[nnz + $0]) })
    }

    override public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool, mode: ForwardMode) {
        super.forward(x, y, rows: rows, accumulate: accumulate, mode: mode)
        if rows == 0 { return }
        // y[n, o_k] += v_k x[n, i_k]
        let (oi, ii) = indices(), v = values.value.data, (inF, outF) = (inFeatures, outFeatures)
        Parallel.ranges(rows, grain: rowGrain) { range in
            for n in range {
                let xr = x + n * inF, yr = y + n * outF
                for k in 0..<oi.count { yr[oi[k]] += v[k] * xr[ii[k]] }
            }
        }
    }

    /// dx (+)= (s dy B) A + dy S, the sparse part as dx[n, i_k] += v_k dy[n, o_k].
    override public func backwardInput(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool) {
        if rows == 0 { return }
        super.backwardInput(dy, dx, rows: rows, accumulate: accumulate)
        let (oi, ii) = indices(), v = values.value.data, (inF, outF) = (inFeatures, outFeatures)
        Parallel.ranges(rows, grain: rowGrain) { range in
            for n in range {
                let dyr = dy + n * outF, dxr = dx + n * inF
                for k in 0..<oi.count { dxr[ii[k]] += v[k] * dyr[oi[k]] }
            }
        }
    }

    /// The factors' gradients, and dv_k += sum_n dy[n, o_k] x[n, i_k] (the entries of
    /// dy^T x on the support, no dense `[out, in]` gradient).
    override public func accumulateGradients(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int) {
        super.accumulateGradients(dy: dy, x: x, rows: rows)
        guard values.requiresGrad, rows > 0 else { return }
        let (oi, ii) = indices(), g = values.gradient().data, (inF, outF) = (inFeatures, outFeatures)
        // Split over entries, each summed over the rows in order: the same sums whatever
        // the number of workers.
        Parallel.ranges(oi.count, grain: max(1, Self.workGrain / max(rows, 1))) { range in
            for n in 0..<rows {
                let dyr = dy + n * outF, xr = x + n * inF
                for k in range { g[k] += dyr[oi[k]] * xr[ii[k]] }
            }
        }
    }

    /// s B A + S.
    override public func denseWeight() -> Tensor {
        let w = super.denseWeight()
        let (oi, ii) = indices()
        for k in 0..<oi.count { w.data[oi[k] * inFeatures + ii[k]] += values.value.data[k] }
        return w
    }

    /// Checks that the support holds `nnz` distinct in-range integer positions in row-major
    /// order, as drawn (a checkpoint's support is read back as is).
    public func validateSupport() throws {
        let nnz = values.count, idx = support.value.data
        var last = -1
        for k in 0..<nnz {
            let fo = idx[k], fi = idx[nnz + k]
            let ok = fo.rounded() == fo && fi.rounded() == fi && fo >= 0 && fo < Float(outFeatures) && fi >= 0 && fi < Float(inFeatures)
            let flat = ok ? Int(fo) * inFeatures + Int(fi) : -1
            guard ok, flat > last else {
                throw ConfigurationError("the sparse support \(support.name) is not a sorted set of distinct positions in [\(outFeatures), \(inFeatures)] (entry \(k))")
            }
            last = flat
        }
    }

    /// SLTrain in a slot: rank r, alpha (s = alpha / r) and density delta.
    public struct Kind: LinearOperatorKind {
        public let rank: Int
        public let alpha: Float
        public let density: Float

        /// The paper's and its scripts' delta (`sltrain60m.sh` ... `sltrain7b.sh`:
        /// `--sp_ratio 0.03`); the reference classes default to 0.01, which the scripts
        /// override.
        public static let defaultDensity: Float = 0.03
        /// The 60M script's `--lora_alpha 32` (the 130M one uses 16 with r 256); Subspace's
        /// presets are small, so the rank has no default here.
        public static let defaultAlpha: Float = 32

        public init(rank: Int, alpha: Float = Kind.defaultAlpha, density: Float = Kind.defaultDensity) {
            self.rank = rank; self.alpha = alpha; self.density = density
        }

        public var name: String { "sltrain" }
        public var scaling: Float { alpha / Float(rank) }

        /// floor(delta * out * in), as the reference's `int(sp_ratio * total)`.
        public func nonZeros(for slot: LinearSlotSpec) -> Int {
            Int((Double(density) * Double(slot.outFeatures) * Double(slot.inFeatures)).rounded(.down))
        }

        public func parameterSpecs(for slot: LinearSlotSpec) -> [ParameterSpec] {
            let nnz = nonZeros(for: slot)
            return [
                ParameterSpec(name: slot.path + ".lora_A", role: slot.role, shape: [rank, slot.inFeatures]),
                ParameterSpec(name: slot.path + ".lora_B", role: slot.role, shape: [slot.outFeatures, rank]),
                ParameterSpec(name: slot.path + ".sparse_value", role: slot.role, shape: [nnz]),
                ParameterSpec(name: slot.path + ".sparse_index", role: slot.role, shape: [2, nnz], trainable: false),
            ]
        }

        public func activationBytes(for slot: LinearSlotSpec, rows: Int, mode: ForwardMode) -> Int {
            mode == .training ? MemoryLayout<Float>.size * rows * rank : 0
        }

        /// Throws for a rank outside 1...min(in, out), an alpha that is not finite and
        /// positive, or a density outside (0, 1) or too small to give one entry.
        public func make(for slot: LinearSlotSpec, initializer: ParameterInitializer) throws -> any LinearOperator {
            try slot.checkRank(rank, method: "SLTrain")
            try checkAlpha(alpha, method: "SLTrain")
            guard density > 0, density < 1 else { throw ConfigurationError("the SLTrain density must lie strictly between 0 and 1 (got \(density))") }
            let specs = parameterSpecs(for: slot)
            let nnz = specs[2].shape[0]
            guard nnz >= 1 else { throw ConfigurationError("the SLTrain density \(density) gives no sparse entry in \(slot.path) [\(slot.outFeatures), \(slot.inFeatures)]") }
            var rs = initializer.root.split(specs[3].name)
            let positions = Self.sampleSupport(count: nnz, of: slot.outFeatures * slot.inFeatures, using: &rs)
            let support = Tensor(uninitialized: [2, nnz])
            for (k, p) in positions.enumerated() {
                support.data[k] = Float(p / slot.inFeatures)
                support.data[nnz + k] = Float(p % slot.inFeatures)
            }
            let values = Tensor(uninitialized: [nnz])
            var rv = initializer.root.split(specs[2].name)
            let bound = 1 / Float(slot.inFeatures).squareRoot()
            rv.fillUniform(values, -bound, bound)
            return SLTrainLinear(
                a: initializer.kaimingUniform(specs[0]), b: initializer.constant(specs[1], 0), scaling: scaling,
                values: Parameter(specs[2], value: values), support: Parameter(specs[3], value: support))
        }

        /// `count` distinct integers of 0..<total, uniformly, in increasing order: Knuth's
        /// selection sampling (Algorithm S), one pass, O(count) memory.
        static func sampleSupport(count: Int, of total: Int, using rng: inout RandomStream) -> [Int] {
            var out: [Int] = []
            out.reserveCapacity(count)
            var needed = count
            for t in 0..<total where needed > 0 {
                let u = Double(rng.next() >> 11) * 0x1p-53
                if u * Double(total - t) < Double(needed) {
                    out.append(t)
                    needed -= 1
                }
            }
            return out
        }
    }
}
